#!/usr/bin/env bun
/** Entry point of the `hashward` operator CLI: wires process I/O into runCli (control-plane/src/cli/index.ts). */
import { readFile } from "node:fs/promises";
import { runCli } from "./index.js";

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  fetch: (url, init) => fetch(url, init),
  readFile: (path) => readFile(path, "utf8"),
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
});

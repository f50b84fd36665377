#!/usr/bin/env bun
/** Entry point of the `hashward` operator CLI: wires process I/O into runCli (control-plane/src/cli/index.ts). */
import { readFile } from "node:fs/promises";
import { httpsFetch } from "../../../shared/tls/index.js";
import { runCli } from "./index.js";

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  // node:https with the plane's CA: the same on Bun and Node (shared/tls).
  fetch: (url, init, ca) => (url.startsWith("https:") ? httpsFetch(ca ? { ca } : {})(url, init) : fetch(url, init)),
  readFile: (path) => readFile(path, "utf8"),
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
});

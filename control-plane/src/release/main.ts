#!/usr/bin/env bun
/** Entry point of the offline `release` tool: wires process I/O into runRelease (control-plane/src/release/index.ts). */
import { httpsFetch } from "../../../shared/tls/index.js";
import { runRelease } from "./index.js";

process.exitCode = await runRelease(process.argv.slice(2), {
  fetch: (url, init, ca) => (url.startsWith("https:") ? httpsFetch(ca ? { ca } : {})(url, init) : fetch(url, init)),
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
});

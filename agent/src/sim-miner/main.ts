/**
 * Standalone simulated miner for demos: `bun agent/src/sim-miner/main.ts --board DIR [--port N] [--host H]
 * [--model S19]`. Creates the board tree when DIR has none, serves the fake cgminer API, prints one JSON line
 * {"msg":"sim-miner ready","port":N,...} and runs until SIGINT/SIGTERM. Point the agent at it with
 * `guards.minerApi: {"host": "127.0.0.1", "port": N}`.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createSimulatedBoard } from "../platform/index.js";
import { SimMiner } from "./index.js";

const { values } = parseArgs({
  options: { board: { type: "string" }, port: { type: "string", default: "0" }, host: { type: "string", default: "127.0.0.1" }, model: { type: "string", default: "S19" } },
});
if (!values.board) {
  process.stderr.write("usage: sim-miner --board DIR [--port N] [--host 127.0.0.1] [--model S19]\n");
  process.exit(2);
}
const root = resolve(values.board);
if (!existsSync(join(root, "config"))) createSimulatedBoard(root, { model: values.model });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  process.stderr.write(`--port: must be 0-65535 (got ${JSON.stringify(values.port)})\n`);
  process.exit(2);
}
const miner = new SimMiner({ root, host: values.host, port });
const bound = await miner.start();
process.stdout.write(`${JSON.stringify({ msg: "sim-miner ready", host: values.host, port: bound, board: root })}\n`);
const stop = () => void miner.close().then(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

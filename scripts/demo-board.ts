/**
 * Makes a simulated miner board and an agent config beside it, for demos and first steps:
 *   npm run demo:board -- DIR [--plane http://127.0.0.1:8080] [--mqtt mqtt://127.0.0.1:1883] [--token hwe_...]
 * Then: dist/agent/hashward-agent-linux-x64 run --config DIR/agent.json
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createSimulatedBoard, SIMULATED_MEASURE_PATHS } from "../agent/src/platform/index.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    plane: { type: "string", default: "http://127.0.0.1:8080" },
    mqtt: { type: "string", default: "mqtt://127.0.0.1:1883" },
    token: { type: "string" },
    model: { type: "string", default: "S19" },
    firmware: { type: "string", default: "2024.06.1" },
  },
});
const dir = positionals[0];
if (!dir) {
  console.error("usage: npm run demo:board -- DIR [--plane URL] [--mqtt URL] [--token ENROLLMENT_TOKEN]");
  process.exit(2);
}
const root = resolve(dir);
mkdirSync(root, { recursive: true });
await createSimulatedBoard(join(root, "board"), { model: values.model! });
const config = {
  controlPlaneUrl: values.plane,
  mqttUrl: values.mqtt,
  stateDir: join(root, "state"),
  model: values.model,
  firmwareVersion: values.firmware,
  ...(values.token ? { enrollmentToken: values.token } : {}),
  platform: { kind: "simulated", root: join(root, "board") },
  measure: { paths: [...SIMULATED_MEASURE_PATHS] },
};
writeFileSync(join(root, "agent.json"), `${JSON.stringify(config, null, 2)}\n`);
console.log(`simulated board: ${join(root, "board")}\nagent config:    ${join(root, "agent.json")}`);

/**
 * Makes a simulated miner board and an agent config beside it, for demos and first steps:
 *   npm run demo:board -- DIR [--token hwe_...] [--url https://127.0.0.1:8080] [--token-file data/admin.token]
 * The plane's addresses and its CA pin come from the plane itself (GET /api/v1/bootstrap, operator role), so a
 * moved port or a new CA is never typed twice. The plane is found like the CLI finds it:
 * --url or HASHWARD_URL (default https://127.0.0.1:8080), its CA from <HASHWARD_DATA_DIR or ./data>/ca.pem
 * (or HASHWARD_CA_FILE / --ca-file), the token from HASHWARD_TOKEN or --token-file.
 * Then: dist/agent/hashward-agent-linux-x64 run --config DIR/agent.json
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createSimulatedBoard, SIMULATED_MEASURE_PATHS } from "../agent/src/platform/index.js";
import { defaultPlaneCaFile, httpsFetch } from "../shared/tls/index.js";

const USAGE = "usage: npm run demo:board -- DIR [--token ENROLLMENT_TOKEN] [--url PLANE_URL] [--token-file FILE] [--ca-file FILE] [--model M] [--firmware V]";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string" },
    "token-file": { type: "string" },
    "ca-file": { type: "string" },
    token: { type: "string" },
    model: { type: "string", default: "S19" },
    firmware: { type: "string", default: "2024.06.1" },
  },
});
const dir = positionals[0];
if (!dir) {
  console.error(USAGE);
  process.exit(2);
}

function fail(message: string): never {
  console.error(`demo:board: ${message}`);
  process.exit(1);
}

const planeUrl = (values.url ?? (process.env.HASHWARD_URL || "https://127.0.0.1:8080")).replace(/\/+$/, "");
const adminToken = values["token-file"] ? readFileSync(values["token-file"], "utf8").trim() : process.env.HASHWARD_TOKEN;
if (!adminToken) fail("set HASHWARD_TOKEN or pass --token-file (an operator token reads the plane's addresses)");
const caFile = values["ca-file"] ?? (process.env.HASHWARD_CA_FILE || defaultPlaneCaFile(process.env));
let ca: string | undefined;
if (planeUrl.startsWith("https:")) {
  try {
    ca = readFileSync(caFile, "utf8");
  } catch (error) {
    fail(`cannot read the plane's CA ${caFile} (${(error as Error).message}); pass --ca-file`);
  }
}

interface Bootstrap {
  controlPlaneUrl: string;
  mqttUrl: string;
  tls: boolean;
  caCertHash: string | null;
}
let bootstrap: Bootstrap;
try {
  const response = await httpsFetch(ca ? { ca } : {})(`${planeUrl}/api/v1/bootstrap`, { headers: { authorization: `Bearer ${adminToken}` } });
  const text = await response.text();
  if (!response.ok) fail(`GET ${planeUrl}/api/v1/bootstrap -> ${response.status}: ${text.slice(0, 300)}`);
  bootstrap = JSON.parse(text) as Bootstrap;
} catch (error) {
  fail(`cannot reach the plane at ${planeUrl} (set HASHWARD_URL or --url): ${error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error)}`);
}

const root = resolve(dir);
mkdirSync(root, { recursive: true });
await createSimulatedBoard(join(root, "board"), { model: values.model! });
const config = {
  controlPlaneUrl: bootstrap.controlPlaneUrl,
  mqttUrl: bootstrap.mqttUrl,
  // HW-PIN-2: the agent checks the plane's CA against this before it sends anything.
  ...(bootstrap.caCertHash ? { caCertHash: bootstrap.caCertHash } : { allowPlaintext: true }),
  stateDir: join(root, "state"),
  model: values.model,
  firmwareVersion: values.firmware,
  ...(values.token ? { enrollmentToken: values.token } : {}),
  platform: { kind: "simulated", root: join(root, "board") },
  measure: { paths: [...SIMULATED_MEASURE_PATHS] },
};
writeFileSync(join(root, "agent.json"), `${JSON.stringify(config, null, 2)}\n`);
console.log(
  `simulated board: ${join(root, "board")}\nagent config:    ${join(root, "agent.json")}\n` +
    `plane:           ${bootstrap.controlPlaneUrl} (MQTT ${bootstrap.mqttUrl}${bootstrap.caCertHash ? `, CA ${bootstrap.caCertHash}` : ", PLAINTEXT"})`,
);

/**
 * A hostile LAN with real processes: the plane under Bun with TLS by default, the compiled agent, the
 * operator CLI and demo:board as a new user runs them, Mosquitto's own client as the attacker's tool, and rogue
 * brokers and planes on the addresses an agent is given. HW-TLS-1, HW-PIN-2.
 */
import { execFile, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from "node:net";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { promisify } from "node:util";
import { Aedes } from "aedes";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueServerCertificate, loadOrCreateCa } from "../../control-plane/src/tls/index.js";
import { createConnectToken, generateKeyPair } from "../../shared/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { BUN, ManagedProcess, REPO_ROOT, startAgent, startControlPlane, writeAgentConfig, type ControlPlane } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const run = promisify(execFile);

function hasMosquittoClients(): boolean {
  try {
    return readFileSync("/usr/bin/mosquitto_sub").length > 0;
  } catch {
    return false;
  }
}
const mosquittoReason = "mosquitto_sub not installed (Debian package mosquitto-clients; .ci/run installs it)";

let plane: ControlPlane;
let admin: ApiClient;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  plane = await startControlPlane();
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
}, 200_000);

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  await plane?.proc.kill("SIGKILL");
});

/** Runs `bun <script> args` in the repo with the operator's environment (HASHWARD_URL, token, data dir). */
async function operator(script: string, args: string[], cwd = REPO_ROOT): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(BUN, [join(REPO_ROOT, script), ...args], {
    cwd,
    env: { ...process.env, HASHWARD_URL: plane.httpUrl, HASHWARD_TOKEN: plane.adminToken, HASHWARD_DATA_DIR: plane.dataDir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number>((resolve) => child.on("exit", (c) => resolve(c ?? -1)));
  return { code, stdout, stderr };
}

/** A new user's steps: an enrollment token from the CLI, a board from demo:board (addresses and pin from the plane). */
async function demoBoard(name: string): Promise<{ dir: string; configFile: string; config: Record<string, unknown> }> {
  const token = await operator("control-plane/src/cli/main.ts", ["tokens", "enrollment", "--max-uses", "1"]);
  expect(token.code, token.stderr).toBe(0);
  const created = JSON.parse(token.stdout) as { token: string; caCertHash: string };
  expect(created.caCertHash).toBe(plane.caCertHash); // HW-PIN-2: the token travels with the CA pin
  const dir = tempDir(name).path;
  const made = await operator("scripts/demo-board.ts", [join(dir, "demo"), "--token", created.token]);
  expect(made.code, made.stderr).toBe(0);
  const configFile = join(dir, "demo", "agent.json");
  const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
  Object.assign(config, { heartbeatIntervalMs: 500, enrollPollMs: 300, reconnectMinMs: 100, reconnectMaxMs: 1000 });
  writeFileSync(configFile, JSON.stringify(config));
  return { dir, configFile, config };
}

function agent(name: string, configFile: string): ManagedProcess {
  const proc = startAgent(name, configFile);
  cleanups.push(() => proc.kill("SIGKILL"));
  return proc;
}

/** A broker that would take any CONNECT: records every username/password it is offered and every byte it gets. */
async function rogueBroker(kind: "tls" | "plaintext"): Promise<{ url: string; offered: string[]; bytes: Buffer[] }> {
  const offered: string[] = [];
  const bytes: Buffer[] = [];
  const aedes = await Aedes.createBroker({
    authenticate: (_client, username, password, done) => {
      offered.push(`${username}:${password?.toString()}`);
      done(null, true);
    },
  });
  const handle = (socket: Socket) => {
    socket.on("data", (chunk: Buffer) => bytes.push(chunk));
    aedes.handle(socket);
  };
  let server: NetServer;
  if (kind === "tls") {
    const { ca } = await loadOrCreateCa(tempDir("rogue-ca").path);
    const pair = await issueServerCertificate(ca, ["127.0.0.1"], 3_600_000);
    server = createTlsServer({ cert: pair.cert, key: pair.key }, handle);
  } else {
    server = createNetServer(handle);
  }
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise((resolve) => aedes.close(() => server.close(resolve))));
  // The agent is configured for mqtts:// in both cases: the plaintext rogue just answers on that address.
  return { url: `mqtts://127.0.0.1:${(server.address() as AddressInfo).port}`, offered, bytes };
}

describe("TLS by default (HW-TLS-1)", () => {
  it.skipIf(!hasMosquittoClients())(`refuses mosquitto_sub without TLS, and with the plane's CA but a forged token${hasMosquittoClients() ? "" : ` (${mosquittoReason})`}`, async () => {
    const port = String(plane.mqttPort);
    const plaintext = await run("mosquitto_sub", ["-h", "127.0.0.1", "-p", port, "-t", "#", "-C", "1", "-W", "10", "-u", "hw-x", "-P", "x"]).then(
      () => null,
      (error: { code: number; stderr: string }) => error,
    );
    expect(plaintext).not.toBeNull();
    expect(plaintext!.code).not.toBe(0);

    // A real device id with a token signed by a key that is not the device's.
    const enrolled = await demoBoard("forged");
    const proc = agent("forged-owner", enrolled.configFile);
    await proc.waitForLine("mqtt connected", (l) => l.msg === "mqtt connected", 60_000);
    const deviceId = loadDeviceKey(String(enrolled.config.stateDir))!.deviceId;
    const forged = createConnectToken(deviceId, generateKeyPair().privateKey, Date.now());
    const caFile = join(plane.dataDir, "ca.pem");
    const refused = await run("mosquitto_sub", ["-h", "127.0.0.1", "-p", port, "--cafile", caFile, "-t", `asic/v1/${deviceId}/down/#`, "-C", "1", "-W", "10", "-i", `${deviceId}-x`, "-u", deviceId, "-P", forged]).then(
      () => null,
      (error: { code: number; stderr: string }) => error,
    );
    expect(refused).not.toBeNull();
    expect(refused!.stderr).toMatch(/refused|not authori[sz]ed|bad user name or password/i);
    const view = await admin.get(`/api/v1/devices/${deviceId}`);
    expect(view.enrollment).toBe("accepted");
  }, 120_000);

  it("a new user's walk-through works over TLS: CLI token, demo:board with the plane's addresses and pin, agent trusted-path connect", async () => {
    const { config, configFile } = await demoBoard("walkthrough");
    expect(config.controlPlaneUrl).toBe(plane.httpUrl);
    expect(config.mqttUrl).toBe(plane.mqttUrl);
    expect(config.caCertHash).toBe(plane.caCertHash);
    const proc = agent("walkthrough", configFile);
    await proc.waitForLine("CA pinned", (l) => l.msg === "control plane CA pinned", 60_000);
    await proc.waitForLine("mqtt connected", (l) => l.msg === "mqtt connected", 60_000);
    expect(readFileSync(join(String(config.stateDir), "plane-ca.pem"), "utf8")).toBe(plane.caPem);
    expect(proc.lines.filter((l) => Number(l.level) >= 50)).toEqual([]);
  }, 120_000);
});

describe("the plane pinned from the first contact (HW-PIN-2)", () => {
  it.each(["tls", "plaintext"] as const)("a rogue %s broker on the agent's configured MQTT address gets no token; the agent says so at error", async (kind) => {
    const rogue = await rogueBroker(kind);
    const { configFile, config } = await demoBoard(`rogue-${kind}`);
    writeFileSync(configFile, JSON.stringify({ ...config, mqttUrl: rogue.url }));
    const proc = agent(`rogue-${kind}`, configFile);
    // Enrollment at the real plane worked; its answer names another broker than the configured one.
    const mismatch = await proc.waitForLine("mqtt url mismatch", (l) => String(l.msg).startsWith("configured mqttUrl disagrees"), 60_000);
    expect(mismatch.level).toBe(50);
    expect(mismatch.announced).toBe(plane.mqttUrl);
    const refused = await proc.waitForLine("tls refusal", (l) => String(l.msg).startsWith("MQTT server did not prove"), 60_000);
    expect(refused.level).toBe(50);
    expect(refused.url).toBe(rogue.url);
    // Two more attempts, still nothing.
    await waitFor("three refused attempts", () => proc.lines.filter((l) => String(l.msg).startsWith("MQTT server did not prove")).length >= 3, { timeoutMs: 30_000 });
    const deviceId = loadDeviceKey(String(config.stateDir))!.deviceId;
    expect(rogue.offered).toEqual([]);
    expect(Buffer.concat(rogue.bytes).includes(deviceId)).toBe(false);
    expect(proc.lines.some((l) => l.msg === "mqtt connected")).toBe(false);
  }, 120_000);

  it("a rogue HTTPS plane with another CA gets no enrollment: only the CA download, and an error naming its address", async () => {
    const { ca } = await loadOrCreateCa(tempDir("rogue-plane-ca").path);
    const pair = await issueServerCertificate(ca, ["127.0.0.1"], 3_600_000);
    const requests: string[] = [];
    const server: HttpsServer = createHttpsServer({ cert: pair.cert, key: pair.key }, (req, res) => {
      requests.push(`${req.method} ${req.url}`);
      res.end(req.url === "/ca.pem" ? ca.certPem : "{}");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const rogueUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { configFile, config } = await demoBoard("rogue-plane");
    writeFileSync(configFile, JSON.stringify({ ...config, controlPlaneUrl: rogueUrl }));
    const proc = agent("rogue-plane", configFile);
    const refused = await proc.waitForLine("pin refusal", (l) => String(l.msg).startsWith("control plane did not prove the pinned identity"), 60_000);
    expect(refused.level).toBe(50);
    expect(refused.address).toBe(`${rogueUrl}/ca.pem`);
    await waitFor("a second refused attempt", () => proc.lines.filter((l) => String(l.msg).startsWith("control plane did not prove")).length >= 2, { timeoutMs: 30_000 });
    expect(new Set(requests)).toEqual(new Set(["GET /ca.pem"]));
  }, 120_000);

  it.each([
    ["mqttUrl", (c: Record<string, unknown>) => ({ ...c, mqttUrl: String(c.mqttUrl).replace("mqtts:", "mqtt:") })],
    ["controlPlaneUrl", (c: Record<string, unknown>) => ({ ...c, controlPlaneUrl: String(c.controlPlaneUrl).replace("https:", "http:") })],
  ])("a plaintext %s is refused at start unless allowPlaintext (exit 2, the option named)", async (option, edit) => {
    const dir = tempDir(`plaintext-${option}`).path;
    const { config } = await demoBoard(`plaintext-${option}`);
    const configFile = writeAgentConfig(dir, edit(config));
    const proc = agent(`plaintext-${option}`, configFile);
    expect(await proc.exited).toBe(2);
    expect(proc.tail()).toContain(`${option}: `);
    expect(proc.tail()).toContain("allowPlaintext");
  }, 120_000);
});

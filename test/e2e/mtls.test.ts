/**
 * Mutual TLS for MQTT (HW-MTLS-1). The plane's CA issues a client certificate (CN = device id) at
 * enrollment to an agent with `mqttClientCertificate: true`; with HASHWARD_MQTT_CLIENT_CERT=required the embedded
 * broker admits only a TLS client with such a certificate, and only under the device id it names.
 */
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { createConnectToken } from "../../shared/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { simulatedAgentConfig, startAgent, startControlPlane, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";

const run = promisify(execFile);
const hasMosquitto = existsSync("/usr/bin/mosquitto_sub");

let plane: ControlPlane;
let admin: ApiClient;
const procs: ManagedProcess[] = [];

beforeAll(async () => {
  plane = await startControlPlane({ env: { HASHWARD_MQTT_CLIENT_CERT: "required" } });
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
}, 200_000);

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
  await plane?.proc.kill("SIGKILL");
});

async function miner(name: string, extra: Record<string, unknown>): Promise<{ proc: ManagedProcess; stateDir: string }> {
  const dir = tempDir(name).path;
  const boardRoot = join(dir, "board");
  createSimulatedBoard(boardRoot, { model: "S19" });
  const { token } = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 1 });
  const stateDir = join(dir, "state");
  const config = simulatedAgentConfig(plane, { stateDir, boardRoot, model: "S19", firmwareVersion: "2024.06.1" }, { enrollmentToken: token, ...extra });
  const proc = startAgent(name, writeAgentConfig(dir, config));
  procs.push(proc);
  return { proc, stateDir };
}

describe("mutual TLS for MQTT (HW-MTLS-1)", () => {
  it("an agent asking for a client certificate gets one at enrollment and connects; one without is refused", async () => {
    const withCert = await miner("mtls-yes", { mqttClientCertificate: true });
    await withCert.proc.waitForLine("mqtt connected", (l) => l.msg === "mqtt connected", 90_000);
    const deviceId = loadDeviceKey(withCert.stateDir)!.deviceId;
    const cert = new X509Certificate(readFileSync(join(withCert.stateDir, "mqtt-client.pem")));
    expect(cert.subject).toContain(`CN=${deviceId}`);
    expect(cert.checkIssued(new X509Certificate(plane.caPem!))).toBe(true);

    const without = await miner("mtls-no", {});
    await without.proc.waitForLine("enrolled", (l) => l.msg === "enrollment status" && l.enrollment === "accepted", 90_000);
    await without.proc.waitForLine("refused connect", (l) => l.msg === "mqtt connect failed" || String(l.msg).startsWith("MQTT server did not prove"), 60_000);
    expect(without.proc.lines.some((l) => l.msg === "mqtt connected")).toBe(false);
  }, 240_000);

  it("a device's certificate does not let it connect as another device", async () => {
    const a = await miner("mtls-a", { mqttClientCertificate: true });
    const b = await miner("mtls-b", { mqttClientCertificate: true });
    await a.proc.waitForLine("mqtt connected", (l) => l.msg === "mqtt connected", 90_000);
    await b.proc.waitForLine("mqtt connected", (l) => l.msg === "mqtt connected", 90_000);
    const bKey = loadDeviceKey(b.stateDir)!;
    // A's certificate, B's id and a valid token signed by B's own key: refused (the CN must be the username).
    const error = await mqtt
      .connectAsync(plane.mqttUrl, {
        protocolVersion: 4, clientId: bKey.deviceId, username: bKey.deviceId,
        password: createConnectToken(bKey.deviceId, bKey.privateKey, Date.now()), reconnectPeriod: 0, connectTimeout: 10_000,
        ca: plane.caPem!, cert: readFileSync(join(a.stateDir, "mqtt-client.pem"), "utf8"), key: readFileSync(join(a.stateDir, "mqtt-client.key"), "utf8"),
      })
      .then((client) => (client.end(true), null), (err: Error) => err);
    expect(error?.message).toMatch(/Not authorized/i);
  }, 240_000);

  it.skipIf(!hasMosquitto)(`mosquitto_sub with the plane's CA but no client certificate is refused${hasMosquitto ? "" : " (mosquitto-clients not installed)"}`, async () => {
    const refused = await run("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(plane.mqttPort), "--cafile", join(plane.dataDir, "ca.pem"), "-t", "#", "-C", "1", "-W", "10", "-u", "hw-x", "-P", "x"]).then(
      () => null,
      (error: { code: number }) => error,
    );
    expect(refused).not.toBeNull();
  }, 60_000);
});

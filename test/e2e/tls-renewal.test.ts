/**
 * HW-TLS-2: "the certificate renewed while 100 agents are connected loses no event".
 *
 * The real control plane under Bun with a short server-certificate lifetime (HASHWARD_TLS_CERT_TTL_MS; it renews
 * when a third is left), 5 compiled agent binaries and 95 in-process agents (the same Agent class, as in
 * guards-fleet.test.ts), all over MQTT over TLS with the pinned CA. After a renewal that happens while all 100 are
 * connected: new connections to the MQTT and HTTPS listeners see the new certificate, every device's signed
 * heartbeats keep arriving on the connection it had before, a signed quarantine then a release reach every device
 * and come back as signed acks (both directions of the channel, every device), and no agent connected again.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAgentConfig } from "../../agent/src/config/index.js";
import { silentLogger } from "../../agent/src/log/index.js";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { Agent } from "../../agent/src/runtime/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { simulatedAgentConfig, startAgent, startControlPlane, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const FLEET = 100;
const COMPILED = 5;
const MODEL = "S19";
const FIRMWARE = "2024.06.1";

interface Member {
  name: string;
  /** The member's temp folder (board and state), removed after the test: 100 of them are ~120 MB. */
  dir: string;
  stateDir: string;
  proc?: ManagedProcess;
  agent?: Agent;
  deviceId?: string;
}

let plane: ControlPlane;
let admin: ApiClient;
const fleet: Member[] = [];
let progress: ReturnType<typeof setInterval> | undefined;

beforeAll(async () => {
  // 60 s certificates, checked every 500 ms: a renewal every 40 s (when a third of the lifetime is left), so one
  // lands soon after the fleet is connected, with 20 s to spare before expiry.
  plane = await startControlPlane({ env: { HASHWARD_TLS_CERT_TTL_MS: "60000", HASHWARD_TLS_RENEW_CHECK_MS: "500", HASHWARD_AUTO_QUARANTINE: "off" } });
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
}, 200_000);

afterAll(async () => {
  clearInterval(progress);
  await Promise.all(fleet.map((m) => m.agent?.stop()));
  await Promise.all(fleet.map((m) => m.proc?.kill("SIGKILL")));
  await plane?.proc.kill("SIGKILL");
  for (const m of fleet) rmSync(m.dir, { recursive: true, force: true });
  if (plane) rmSync(plane.dataDir, { recursive: true, force: true });
});

/** The serial number of the certificate a fresh handshake with `port` shows. */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, ca: plane.caPem! }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.on("error", reject);
  });
}

/**
 * The certificates the MQTT and HTTPS listeners serve, read between the same two renewals (a renewal every 40 s
 * could otherwise fall between the two handshakes).
 */
async function servedSerials(): Promise<{ mqtt: string; https: string; renewals: number }> {
  for (;;) {
    const before = renewals();
    const [mqtt, https] = await Promise.all([servedSerial(plane.mqttPort), servedSerial(plane.httpPort)]);
    if (renewals() === before) return { mqtt, https, renewals: before };
  }
}

const renewals = () => plane.proc.lines.filter((l) => l.msg === "TLS server certificate renewed").length;
const connects = (m: Member) => (m.agent ? (m.agent.session?.statistics.connects ?? 0) : m.proc!.lines.filter((l) => l.msg === "mqtt connected").length);

async function everyDevice(what: string, containment: string): Promise<void> {
  let seen: Record<string, number> = {};
  await waitFor(
    what,
    async () => {
      const { devices } = await admin.get(`/api/v1/devices?limit=500`);
      seen = {};
      for (const d of devices as Array<{ containment: string }>) seen[d.containment] = (seen[d.containment] ?? 0) + 1;
      return seen[containment] === FLEET;
    },
    { timeoutMs: 240_000, intervalMs: 1_000 },
  ).catch((error: unknown) => {
    // Where the fleet stood, and how much each in-process agent still had to send (acks wait in its outbox).
    const depths = fleet.flatMap((m) => (m.agent ? [m.agent.outbox.depth] : []));
    throw new Error(`${String(error)}; containment ${JSON.stringify(seen)}; in-process outbox depths max ${Math.max(...depths)}, total ${depths.reduce((a, b) => a + b, 0)}`);
  });
}

describe("server certificate renewal under a connected fleet (HW-TLS-2)", () => {
  // Two product bugs kept this from passing with 100 agents. (1) Under Bun the HTTPS listener was never renewed
  // (Bun's https.Server has no setSecureContext; control-plane/src/tls createApiServer). (2) The release of the
  // fleet never completed: the plane re-published every unacked command each retry tick, every agent answered each
  // copy with another queued (fsynced) ack, and 95 agents sharing one event loop drained their outboxes slower than
  // they grew, so the release ack sat behind hundreds of quarantine re-acks until the command expired. Now the
  // agent's outbox keeps one waiting ack per seq (agent/src/outbox) and the plane backs off re-publishing
  // (CommandRetrySchedule in control-plane/src/service/commands/pending.ts). About 75-110 s on a loaded 2-core machine,
  // most of it waiting for the renewal.
  it(`renews while ${FLEET} agents are connected: nobody reconnects, commands and acks reach every device`, async () => {
    const { token } = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: FLEET, label: "renewal" });
    for (let i = 0; i < FLEET; i++) {
      const dir = tempDir(`renew-${i}`).path;
      const boardRoot = join(dir, "board");
      createSimulatedBoard(boardRoot, { model: MODEL });
      const member: Member = { name: `renew-${i}`, dir, stateDir: join(dir, "state") };
      const config = simulatedAgentConfig(plane, { stateDir: member.stateDir, boardRoot, model: MODEL, firmwareVersion: FIRMWARE }, {
        enrollmentToken: token,
        heartbeatIntervalMs: 5_000,
        guards: { enabled: false },
        watch: false,
      });
      if (i < COMPILED) member.proc = startAgent(member.name, writeAgentConfig(dir, config));
      else member.agent = new Agent(parseAgentConfig(config), { log: silentLogger(), agentVersion: "0.1.0-renewal" });
      fleet.push(member);
    }
    // Progress, so a slow machine shows where the fleet is (not an assertion).
    const started = Date.now();
    progress = setInterval(() => console.log(`renewal test: ${Math.round((Date.now() - started) / 1000)} s, ${fleet.filter((m) => connects(m) >= 1).length}/${FLEET} connected, ${renewals()} renewals`), 10_000);
    await Promise.all(fleet.filter((m) => m.agent).map((m) => m.agent!.start()));
    for (const m of fleet) m.deviceId = m.agent?.deviceId ?? (await waitFor(`${m.name}'s key`, () => loadDeviceKey(m.stateDir)?.deviceId));
    await waitFor("every agent connected", () => fleet.every((m) => connects(m) >= 1 && (m.agent ? m.agent.session?.connected : true)), { timeoutMs: 400_000, intervalMs: 500 });
    console.log(`renewal test: ${FLEET} agents connected`);
    clearInterval(progress);

    // From here on, across the renewal and the commands, no agent may connect again.
    const connectsBefore = new Map(fleet.map((m) => [m.name, connects(m)]));
    const before = await servedSerials();
    expect(before.https).toBe(before.mqtt);
    await waitFor("a renewal while the fleet is connected", () => renewals() > before.renewals, { timeoutMs: 300_000, intervalMs: 500 });
    // New connections to both listeners (MQTT over TLS and the HTTPS API) see the new certificate.
    const after = await servedSerials();
    expect(after.mqtt).not.toBe(before.mqtt);
    expect(after.https).toBe(after.mqtt);
    console.log("renewal test: certificate renewed");

    // Signed heartbeats (HW-LIVE-1: valid only on the connection their connect token opened) keep arriving on the
    // connections opened before the renewal: every device is seen after it.
    const renewedAt = Number(plane.proc.lines.filter((l) => l.msg === "TLS server certificate renewed").at(-1)!.time);
    await waitFor(
      "a signed heartbeat from every device after the renewal",
      async () => {
        const { devices } = await admin.get(`/api/v1/devices?limit=500`);
        return (devices as Array<{ lastSeenAt: string | null }>).filter((d) => d.lastSeenAt !== null && Date.parse(d.lastSeenAt) > renewedAt).length === FLEET;
      },
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );

    const deviceIds = fleet.map((m) => m.deviceId!);
    await admin.post("/api/v1/quarantine", { deviceIds, reason: "renewal test" });
    await everyDevice("every device quarantined (signed command down, signed ack up)", "quarantined");
    console.log("renewal test: every device quarantined");
    await admin.post("/api/v1/release", { deviceIds, reason: "renewal test" });
    await everyDevice("every device released", "none");

    // Nobody lost the session across the renewal: no agent connected again.
    expect(fleet.filter((m) => connects(m) !== connectsBefore.get(m.name)).map((m) => m.name)).toEqual([]);
  }, 1_200_000);
});

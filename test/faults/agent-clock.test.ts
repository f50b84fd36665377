/**
 * Fault campaign (docs/reliability.md "Agent-side faults"), "clock jumps" (HW-FAULT-11): the real plane (under Bun) and the compiled agent (Bun) each run
 * under libfaketime (Debian `faketime`: LD_PRELOAD with FAKETIME_TIMESTAMP_FILE + FAKETIME_NO_CACHE=1, so the test
 * moves a running process's wall clock by rewriting a file). Bun reads the wall clock through libc's
 * clock_gettime, which libfaketime replaces (checked: Date moves, timers keep firing); FAKETIME_DONT_FAKE_MONOTONIC
 * leaves the monotonic clock alone, as a real step of the wall clock (NTP, `date -s`) does.
 *
 * Agent steps +3 h and -3 h: its connect tokens, heartbeats and evidence fall outside the plane's windows and are
 * refused (counted with reason `clock` / refused CONNECT), commands look expired (or issued in the future) to it,
 * so the device goes `stale`, never stays trusted on messages nobody can verify, and a quarantine it could not take
 * expires on the plane (HW-TRUST-3: back to `none`); when the clock is right again it reconnects and is trusted.
 * Plane steps: +3 h and back within one staleness window marks nobody stale (and an API token with 1 h left is
 * refused only while the clock is ahead); -3 h that stays makes the silent-on-its-clock device `stale` after one
 * window, not 3 h later; back to the right time, it is trusted again.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { describeUnless } from "../support/skip.js";
import { AGENT_BINARY, measureWithAgent, startAgent, startControlPlane, simulatedAgentConfig, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const MODEL = "S19";
const FIRMWARE = "2024.06.1";
const SLOW = { timeoutMs: 90_000 };
const STALE_AFTER_MS = 10_000;
const COMMAND_TTL_MS = 8_000;
const LIBFAKETIME = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"].find((f) => existsSync(f));

function missing(): string | null {
  if (!LIBFAKETIME) return "libfaketime is missing (apt-get install faketime; .ci/run does it)";
  if (!existsSync(AGENT_BINARY)) return `${AGENT_BINARY} is missing: run npm run build:agent`;
  return null;
}

/** A process clock the test moves: `set("+3h")`, `set("-3h")`, `set("+0")` (libfaketime's relative offsets). */
function fakeClock(file: string): { env: Record<string, string>; set(offset: string): void } {
  writeFileSync(file, "+0\n");
  return {
    env: {
      LD_PRELOAD: LIBFAKETIME!,
      FAKETIME_TIMESTAMP_FILE: file,
      FAKETIME_NO_CACHE: "1",
      FAKETIME_DONT_FAKE_MONOTONIC: "1",
      NO_FAKE_STAT: "1",
    },
    set: (offset) => writeFileSync(file, `${offset}\n`),
  };
}

let plane: ControlPlane;
let admin: ApiClient;
let planeClock: ReturnType<typeof fakeClock>;
let agentClock: ReturnType<typeof fakeClock>;
let agent: ManagedProcess;
let configFile: string;
let deviceId: string;
const agents: ManagedProcess[] = [];

const device = () => admin.get(`/api/v1/devices/${deviceId}`);
const transitionsTo = async (to: string) =>
  ((await admin.get(`/api/v1/devices/${deviceId}/history?limit=200`)).transitions as { machine: string; to: string; reason: string }[]).filter((t) => t.machine === "appraisal" && t.to === to);
async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const text = (await admin.request("GET", "/metrics")).body as string;
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) && want.every((w) => line.includes(w)))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}
const refusedHeartbeats = () => metric("hashward_mqtt_messages_rejected_total", { kind: "heartbeat", reason: "clock" });
/** Trusted again after a fault: fresh evidence on a challenge (stale leaves only on an appraisal). */
async function trustedAgain(): Promise<void> {
  await admin.post(`/api/v1/devices/${deviceId}/attest`, {});
  await waitFor("trusted", async () => (await device()).appraisal === "trusted", SLOW);
}

describeUnless(missing(), "clock jumps on the agent and on the plane (libfaketime)", () => {
  beforeAll(async () => {
    const dir = tempDir("clock").path;
    planeClock = fakeClock(join(dir, "plane-clock"));
    agentClock = fakeClock(join(dir, "agent-clock"));
    plane = await startControlPlane({
      env: { ...planeClock.env, HASHWARD_STALE_AFTER_MS: String(STALE_AFTER_MS), HASHWARD_COMMAND_TTL_MS: String(COMMAND_TTL_MS) },
    });
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
    await admin.ok("PUT", "/api/v1/policies/pools", { allowedUrls: ["stratum+tcp://pool.example.net:3333"], workerPatterns: ["^farm\\.worker\\d+$"] });
    const root = join(dir, "board");
    createSimulatedBoard(root, { model: MODEL, firmwareVersion: FIRMWARE });
    const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 1, label: "clock" });
    configFile = writeAgentConfig(
      dir,
      simulatedAgentConfig(plane, { stateDir: join(dir, "state"), boardRoot: root, model: MODEL, firmwareVersion: FIRMWARE }, {
        enrollmentToken: token.token,
        measure: { paths: ["/firmware"] },
        guards: { enabled: false },
      }),
    );
    await admin.post("/api/v1/reference-values", { model: MODEL, firmwareVersion: FIRMWARE, measurements: await measureWithAgent(configFile) });
    agent = startAgent("clock-agent", configFile, agentClock.env);
    agents.push(agent);
    deviceId = await waitFor("the device key", () => loadDeviceKey(join(dir, "state"))?.deviceId, SLOW);
    await waitFor("trusted", async () => (await device().catch(() => undefined))?.appraisal === "trusted", SLOW);
  }, 240_000);

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.kill("SIGKILL")));
    await plane?.proc.kill("SIGKILL");
  });

  it("the agent's clock +3 h: refused, stale, a quarantine it cannot take expires; right again: trusted", async () => {
    const refused = await refusedHeartbeats();
    agentClock.set("+3h");
    await waitFor("heartbeats refused as off-clock", async () => (await refusedHeartbeats()) > refused, SLOW);
    await waitFor("stale (nothing it sends can be verified)", async () => (await device()).appraisal === "stale", SLOW);
    expect((await transitionsTo("trusted")).length).toBe(1); // never re-trusted on an off-clock message

    // The quarantine reaches the agent but looks expired on its clock (HW-CMD-1); the plane lets it expire.
    await admin.post(`/api/v1/devices/${deviceId}/quarantine`, { reason: "clock drill" });
    await agent.waitForLine("the command refused on the agent's clock", (l) => l.msg === "command rejected" && l.action === "quarantine" && /expired/.test(String(l.reason)), 60_000);
    await waitFor("the quarantine expired on the plane", async () => {
      const { commands } = await admin.get(`/api/v1/devices/${deviceId}/commands`);
      return (commands as { action: string; status: string }[]).find((c) => c.action === "quarantine")?.status === "expired";
    }, SLOW);
    expect((await device()).containment).toBe("none"); // HW-TRUST-3: an expired command falls back
    // Redelivered every 500 ms until it expired, reported once.
    expect(agent.lines.filter((l) => l.msg === "command rejected" && l.action === "quarantine")).toHaveLength(1);

    agentClock.set("+0");
    const seenAt = Date.parse((await device()).lastSeenAt);
    await waitFor("heartbeats accepted again", async () => Date.parse((await device()).lastSeenAt) > seenAt, SLOW);
    await trustedAgain();
  }, 180_000);

  it("across a restart, +3 h: the plane refuses its connect token; -3 h: it refuses the plane's certificate (not yet valid); right again: connected, trusted", async () => {
    const restart = async (offset: string) => {
      agentClock.set(offset);
      await agent.kill("SIGKILL");
      agent = startAgent(`clock-agent${offset}`, configFile, agentClock.env);
      agents.push(agent);
    };
    const refused = await metric("hashward_mqtt_connect_refused_total", {});
    await restart("+3h");
    await waitFor("CONNECT refused (token issued in the plane's future)", async () => (await metric("hashward_mqtt_connect_refused_total", {})) > refused, SLOW);
    expect((await device()).connected).toBe(false);

    await restart("-3h");
    await waitFor("TLS refuses the plane (certificate not yet valid on the agent's clock)", () => agent.rawOutput.some((l) => /not yet valid|CERT_NOT_YET_VALID/i.test(l)), SLOW);
    expect((await device()).connected).toBe(false);
    await waitFor("stale", async () => (await device()).appraisal === "stale", SLOW);

    agentClock.set("+0");
    await waitFor("connected again", async () => (await device()).connected === true, SLOW);
    await trustedAgain();
  }, 180_000);

  it("the plane's clock +3 h and back within one staleness window: nobody is marked stale; a 1 h API token is refused only meanwhile", async () => {
    if ((await device()).appraisal !== "trusted") await trustedAgain();
    const { token: shortToken } = await admin.post("/api/v1/api-tokens", { role: "viewer", label: "one hour", ttlMs: 3_600_000 });
    const viewer = new ApiClient(plane.httpUrl, shortToken);
    const staleBefore = (await transitionsTo("stale")).length;
    const lines = plane.proc.lines.length;
    const stepLines = () => plane.proc.lines.slice(lines).filter((l) => typeof l.msg === "string" && l.msg.startsWith("the plane's clock stepped"));
    planeClock.set("+3h");
    await waitFor("the plane notices the step", () => stepLines().length >= 1, SLOW);
    expect((await viewer.request("GET", "/api/v1/devices")).status).toBe(401); // expired on the plane's clock
    planeClock.set("+0");
    await waitFor("the plane notices the step back", () => stepLines().length >= 2, SLOW);
    expect(stepLines().map((l) => Math.sign(Number(l.steppedMs)))).toEqual([1, -1]);
    await plane.proc.waitForLine("the sweep resumed", (l) => l.msg === "staleness sweep resumed after a clock step" && plane.proc.lines.indexOf(l) > lines, 60_000);
    const after = await device();
    expect(after.appraisal).toBe("trusted");
    expect((await transitionsTo("stale")).length).toBe(staleBefore);
    expect((await viewer.request("GET", "/api/v1/devices")).status).toBe(200);
  }, 180_000);

  it("the plane's clock -3 h and staying: the device is stale after one window, not 3 h later; right again: trusted", async () => {
    if ((await device()).appraisal !== "trusted") await trustedAgain();
    const lines = plane.proc.lines.length;
    planeClock.set("-3h");
    await waitFor("stale on a sighting from the plane's future", async () => (await transitionsTo("stale")).find((t) => /in the plane's future/.test(t.reason)), SLOW);
    planeClock.set("+0");
    await waitFor("the plane notices the step back", () => plane.proc.lines.slice(lines).filter((l) => typeof l.msg === "string" && l.msg.startsWith("the plane's clock stepped")).length >= 2, SLOW);
    await trustedAgain();
  }, 180_000);
});

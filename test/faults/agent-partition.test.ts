/**
 * Fault campaign (docs/reliability.md "Agent-side faults"), "the network partitioned during an update download" (HW-FAULT-12). The compiled agent runs
 * in a network namespace (test/support/board-netns.ts) on an A/B simulated board; the real plane (TUF repository,
 * a release signed offline by the release CLI) is reached through the plane namespace's forwarder. Mid-download
 * the test inserts iptables DROP rules for the plane's address inside the board (packets vanish, nothing is
 * refused), then:
 *  - a short partition: the stalled download is aborted and started again once the rules are gone; the update
 *    completes with the signed hash verified, and no slot was touched while the network was gone;
 *  - a partition that outlasts every attempt: the update fails cleanly, reported in the command's ack, the board
 *    unchanged; once the network returns the agent reports again and the next update installs.
 * Needs root and iptables/iproute2/util-linux (skipped with the reason otherwise).
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createSimulatedBoard, type SimulatedBoard } from "../../agent/src/platform/simulated.js";
import { ApiClient } from "../support/api.js";
import { boardNamespaceSkipReason, createBoardNamespace, type BoardNamespace } from "../support/board-netns.js";
import { loadDeviceKey } from "../support/device-key.js";
import { AGENT_BINARY, ManagedProcess, startControlPlane, simulatedAgentConfig, writeAgentConfig, type ControlPlane } from "../support/processes.js";
import { createReleaser, type Releaser } from "../support/release.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";

const MODEL = "S19";
const IPTABLES = "/usr/sbin/iptables-nft";
const SLOW = { timeoutMs: 90_000 };
/** The image: large enough that the throttled link below is mid-download for seconds. */
const BLOB_BYTES = 6 * 1024 * 1024;
/** The plane's answers reach the board at this rate (bytes/ms, ~2 MB/s), so there is a "mid-download" to cut. */
const LINK_BYTES_PER_MS = 2048;

function missing(): string | null {
  if (!existsSync(AGENT_BINARY)) return `${AGENT_BINARY} is missing: run npm run build:agent`;
  return boardNamespaceSkipReason("nft");
}

let ns: BoardNamespace;
let plane: ControlPlane;
let admin: ApiClient;
let releaser: Releaser;
let board: SimulatedBoard;
let agent: ManagedProcess;
let deviceId: string;
let tmp: string;
const proxies: Server[] = [];

/**
 * A Unix socket in front of one of the plane's TCP ports (the namespace forwarder publishes it on planeIp). With
 * `bytesPerMs` the plane -> board direction is paced like a slow uplink (a userland shaper: no qdisc needed).
 */
function unixProxy(path: string, port: number, bytesPerMs?: number): Promise<void> {
  const server = createServer((inbound) => {
    const outbound = createConnection(port, "127.0.0.1");
    inbound.pipe(outbound);
    if (bytesPerMs === undefined) outbound.pipe(inbound);
    else {
      outbound.on("data", (chunk: Buffer) => {
        inbound.write(chunk);
        outbound.pause();
        setTimeout(() => outbound.resume(), Math.ceil(chunk.byteLength / bytesPerMs));
      });
      outbound.on("end", () => inbound.end());
    }
    const close = () => (inbound.destroy(), outbound.destroy());
    for (const s of [inbound, outbound]) s.on("error", close).on("close", close);
  });
  proxies.push(server);
  return new Promise((resolve) => server.listen(path, resolve));
}

/** DROP every packet between the board and the plane's address, both ways; returns the undo. */
function partition(): () => void {
  const rules = [
    ["OUTPUT", "-d", ns.planeIp],
    ["INPUT", "-s", ns.planeIp],
  ];
  for (const [chain, ...match] of rules) ns.run(IPTABLES, ["-I", chain!, ...match, "-j", "DROP"]);
  return () => {
    for (const [chain, ...match] of rules) ns.run(IPTABLES, ["-D", chain!, ...match, "-j", "DROP"]);
  };
}

/** Bytes of the download in progress (the agent's fetch temp file under its TMPDIR), 0 when none. */
function downloading(): number {
  if (!existsSync(tmp)) return 0;
  for (const dir of readdirSync(tmp).filter((d) => d.startsWith("hashward-fetch-"))) {
    const file = join(tmp, dir, "download");
    if (existsSync(file)) return statSync(file).size;
  }
  return 0;
}

const slotsListing = () => readdirSync(join(board.root, "slots")).sort();
const device = () => admin.get(`/api/v1/devices/${deviceId}`);
async function answered(seq: number): Promise<{ status: string; reason: string | null } | undefined> {
  const { commands } = await admin.get(`/api/v1/devices/${deviceId}/commands`);
  const command = (commands as { seq: number; status: string; reason: string | null }[]).find((c) => c.seq === seq);
  return command && command.status !== "pending" ? command : undefined;
}

async function publish(version: string): Promise<string> {
  const name = `fw-${version}`;
  await releaser.publish({ name, model: MODEL, version, extraFiles: [{ path: "blob.bin", content: randomBytes(BLOB_BYTES) }] });
  return name;
}

describeUnless(missing(), "the network partitioned during an update download (netns, iptables DROP)", () => {
  beforeAll(async () => {
    ns = await createBoardNamespace();
    plane = await startControlPlane({ env: { HASHWARD_TLS_SAN: ns.planeIp } });
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
    releaser = await createReleaser(join(ns.dir, "release"), admin);
    await unixProxy(join(ns.dir, "http.sock"), plane.httpPort, LINK_BYTES_PER_MS);
    await unixProxy(join(ns.dir, "mqtt.sock"), plane.mqttPort);
    const inside = await ns.exposePlane({ http: join(ns.dir, "http.sock"), mqtt: join(ns.dir, "mqtt.sock") });
    const urls = { httpUrl: inside.httpUrl.replace(/^http:/, "https:"), mqttUrl: inside.mqttUrl.replace(/^mqtt:/, "mqtts:"), caCertHash: plane.caCertHash };

    board = createSimulatedBoard(join(ns.dir, "board"), { model: MODEL, firmwareVersion: "1.0.0", slots: true });
    const stateDir = join(ns.dir, "state");
    tmp = join(ns.dir, "tmp");
    mkdirSync(tmp);
    const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 1, label: "partition" });
    const configFile = writeAgentConfig(
      ns.dir,
      simulatedAgentConfig(urls, { stateDir, boardRoot: board.root, model: MODEL, firmwareVersion: "1.0.0" }, {
        enrollmentToken: token.token,
        measure: { paths: ["/firmware"] },
        guards: { enabled: false },
        update: { trustedRootFile: releaser.rootFile, stallTimeoutMs: 2000, downloadAttempts: 3 },
      }),
    );
    agent = new ManagedProcess("partition-agent", ns.spawn(AGENT_BINARY, ["run", "--config", configFile], { TMPDIR: tmp }));
    deviceId = await waitFor("the device key", () => loadDeviceKey(stateDir)?.deviceId, SLOW);
    await waitFor("connected", async () => (await device().catch(() => undefined))?.connected === true, SLOW);
  }, 240_000);

  afterAll(async () => {
    await agent?.kill("SIGKILL");
    await plane?.proc.kill("SIGKILL");
    for (const p of proxies) p.close();
    await ns?.destroy();
  });

  it("a partition mid-download: the download starts again when it lifts, the hash is verified, the update completes", async () => {
    const target = await publish("1.1.0");
    const slotsBefore = slotsListing();
    const command = await admin.post(`/api/v1/devices/${deviceId}/update`, { targetName: target });
    await waitFor("the image half-way down", () => downloading() > BLOB_BYTES / 4, SLOW);
    const heal = partition();
    let lifted = false;
    try {
      const retry = await agent.waitForLine("the stalled download aborted", (l) => l.msg === "update download interrupted; starting it again", 60_000);
      expect(retry).toMatchObject({ attempt: 1, reason: expect.stringMatching(/no data for 2000 ms/) });
      // Nothing touched a slot while the network was gone (HW-UPD-4/5: the slot is written from a verified file).
      expect(slotsListing()).toEqual(slotsBefore);
      expect(await board.slots.status()).toEqual({ active: "a", fallback: null });
      heal();
      lifted = true;
    } finally {
      if (!lifted) heal();
    }
    const ack = await waitFor("the update answered", () => answered(command.seq), SLOW);
    expect(ack).toMatchObject({ status: "acked" });
    expect(await board.slots.status()).toEqual({ active: "b", fallback: null });
    expect(readFileSync(board.resolve("/firmware/etc/version"), "utf8")).toBe(`${MODEL} 1.1.0\n`);
    expect(readFileSync(board.resolve("/firmware/blob.bin")).byteLength).toBe(BLOB_BYTES);
    expect(slotsListing().filter((s) => s.includes("partial"))).toEqual([]);
    expect(downloading()).toBe(0); // the temp download is gone
    await waitFor("the plane sees 1.1.0", async () => (await device()).firmwareVersion === "1.1.0", SLOW);
    expect(agent.running).toBe(true);
  }, 240_000);

  it("a partition longer than every attempt: the update fails cleanly and is reported, the board unchanged; the next one installs", async () => {
    const target = await publish("1.2.0");
    const slotsBefore = slotsListing();
    const statusBefore = await board.slots.status();
    const versionBefore = readFileSync(board.resolve("/firmware/etc/version"), "utf8");
    const command = await admin.post(`/api/v1/devices/${deviceId}/update`, { targetName: target });
    await waitFor("the image on its way down", () => downloading() > BLOB_BYTES / 8, SLOW); // past the metadata
    const mark = agent.lines.length;
    const heal = partition();
    try {
      const since = () => agent.lines.slice(mark);
      const rejected = await waitFor("the last attempt stalled too", () => since().find((l) => l.msg === "update rejected; board unchanged"), SLOW);
      expect(String(rejected.reason)).toMatch(/no data for 2000 ms/);
      expect(since().filter((l) => l.msg === "update download interrupted; starting it again").map((l) => l.attempt), JSON.stringify(since())).toEqual([1, 2]);
      expect(slotsListing()).toEqual(slotsBefore);
      expect(await board.slots.status()).toEqual(statusBefore);
      expect(readFileSync(board.resolve("/firmware/etc/version"), "utf8")).toBe(versionBefore);
    } finally {
      heal();
    }
    // The failure reaches the plane once the network is back (the ack waited in the outbox), nothing wedged.
    const ack = await waitFor("the failed update reported", () => answered(command.seq), SLOW);
    expect(ack).toMatchObject({ status: "failed", reason: expect.stringMatching(/no data for 2000 ms/) });
    const seenAt = Date.parse((await device()).lastSeenAt);
    await waitFor("heartbeats again", async () => Date.parse((await device()).lastSeenAt) > seenAt, SLOW);

    const again = await admin.post(`/api/v1/devices/${deviceId}/update`, { targetName: target });
    expect(await waitFor("the retried update answered", () => answered(again.seq), SLOW)).toMatchObject({ status: "acked" });
    expect(readFileSync(board.resolve("/firmware/etc/version"), "utf8")).toBe(`${MODEL} 1.2.0\n`);
  }, 240_000);
});

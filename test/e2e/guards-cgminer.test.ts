/**
 * Reading the miner as the miner reads itself, end to end: the real plane (pool
 * policy through its HTTP API, delivered signed), the compiled agent on a simulated board, and the simulated
 * miner answering over TCP in cgminer's exact bytes (strings escaped only as cgminer escapes them: a TAB in a
 * worker name goes out raw, the answer is NUL-terminated). The attacker is another process using the plain
 * `command|parameter` form, as cgminer's own api-example tools do.
 */
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../support/api.js";
import { GuardedFleet, type GuardedBoard } from "../support/guarded-board.js";
import { startControlPlane, type ControlPlane } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

const GOOD_POOL = "stratum+tcp://pool.example.net:3333";
const NICEHASH = "stratum+tcp://sha256.eu.nicehash.com:9200#xnsub";
const RENTAL = "stratum+tcp://rental.example.net:*";

let plane: ControlPlane;
let admin: ApiClient;
let fleet: GuardedFleet;

/** A board whose miner config is `config` (written before the miner starts), enrolled, its policy applied. */
const startBoard = (name: string, config?: Record<string, unknown>): Promise<GuardedBoard> => fleet.start(name, { minerConfig: config, waitTrusted: false });

/** Plain-form requests (`command|parameter`) from another process, one per connection; returns the raw answers. */
function sendPlain(port: number, requests: string[]): Promise<string[]> {
  const script = `
    const net = require("node:net");
    const send = (req) => new Promise((resolve, reject) => {
      const s = net.connect(${port}, "127.0.0.1", () => s.end(req));
      let out = ""; s.on("data", (d) => (out += d.toString("latin1"))); s.on("close", () => resolve(out)); s.on("error", reject);
    });
    (async () => { for (const req of ${JSON.stringify(requests)}) process.stdout.write(JSON.stringify(await send(req)) + "\\n"); })();
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(out.trim().split("\n").map((l) => JSON.parse(l) as string)) : reject(new Error(`attacker exited ${code}`))));
  });
}

const device = (id: string) => admin.get(`/api/v1/devices/${id}`);
const guardAlerts = async (id: string) => ((await admin.get(`/api/v1/devices/${id}/events`)).events as any[]).filter((e) => e.kind === "guard-alert");

beforeAll(async () => {
  plane = await startControlPlane();
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
  fleet = new GuardedFleet(plane, admin);
  // HW-POLICY-1: the NiceHash #xnsub tail and "any port on this host" are policy forms the API accepts.
  await admin.ok("PUT", "/api/v1/policies/pools", { allowedUrls: [GOOD_POOL, NICEHASH, RENTAL], workerPatterns: ["^farm\\.worker\\d+$"] });
}, 120_000);

afterAll(async () => {
  await fleet?.close();
  await plane?.proc.kill("SIGKILL");
});

describe("the miner read as cgminer writes and reads (real plane, compiled agent, cgminer-faithful miner)", () => {
  it("a rogue worker on the approved host behind a pool whose user holds a raw TAB: contraindicated and quarantined", async () => {
    const board = await startBoard("cgminer-tab");
    await waitFor("trusted after a clean cycle", async () => (await device(board.id)).appraisal === "trusted", { timeoutMs: 60_000 });
    const answers = await sendPlain(board.miner.port, [
      `addpool|${GOOD_POOL},mallory.rig7,x`,
      `addpool|${GOOD_POOL},x\ty,x`, // a raw 0x09: cgminer sends it back unescaped in its pools answer
      "switchpool|1",
      // Read in the same burst: once the agent reports the hijack, the quarantine stops the miner (connections dropped).
      '{"command":"pools"}',
    ]);
    expect(answers.slice(0, 3).map((a) => a.slice(0, 9))).toEqual(["STATUS=S,", "STATUS=S,", "STATUS=S,"]);
    // The miner's own pools answer is not strict JSON now (as on a real cgminer).
    expect(answers[3]).toContain('"User":"x\ty"');
    const view = await fleet.quarantined(board.id);
    expect(view.appraisal).toBe("contraindicated");
    const alerts = (await guardAlerts(board.id)).map((e) => e.detail);
    expect(alerts).toContainEqual(expect.objectContaining({ guard: "pool-live", tier: "contraindicated", seen: { url: GOOD_POOL, user: "mallory.rig7", active: true } }));
    expect(alerts).toContainEqual(expect.objectContaining({ guard: "pool-live", tier: "contraindicated", seen: { url: GOOD_POOL, user: "x\ty", active: false } }));
    expect(alerts.filter((a) => a.guard === "miner-api")).toEqual([]); // the answer was read, not "malformed"
  }, 180_000);

  it("scheme-less, #xnsub and any-port pools are the approved ones; a hijack in the top-level keys is not missed", async () => {
    const board = await startBoard("cgminer-config", {
      pools: [
        { url: "pool.example.net:3333", user: "farm.worker1", pass: "x" }, // cgminer adds stratum+tcp://
        { url: NICEHASH, user: "farm.worker2", pass: "x" },
        { url: "stratum+tcp://rental.example.net:17021", user: "farm.worker3", pass: "x" }, // moved by client.reconnect
      ],
      "api-listen": true,
      "api-allow": "W:127.0.0.1/8", // localhost only
    });
    const trusted = await waitFor("trusted: no finding on the approved pools", async () => {
      const d = await device(board.id);
      return d.appraisal === "trusted" && d;
    }, { timeoutMs: 60_000 });
    expect(trusted.containment).not.toBe("quarantined");
    expect(await guardAlerts(board.id)).toEqual([]);

    // The attacker leaves `pools` empty and puts the pool in the top-level keys cgminer also reads.
    const file = join(board.root, "config/cgminer.conf");
    const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...config, pools: [], url: ["stratum+tcp://evil.example:3333"], user: "thief.1", pass: "x", "api-allow": ["W:0/0"] }));
    const view = await fleet.quarantined(board.id);
    expect(view.appraisal).toBe("contraindicated");
    const alerts = (await guardAlerts(board.id)).map((e) => e.detail);
    expect(alerts).toContainEqual(expect.objectContaining({ guard: "pool-config", tier: "contraindicated", subject: "/config/cgminer.conf#pools[0]", seen: { url: "stratum+tcp://evil.example:3333", user: "thief.1" } }));
    expect(alerts).toContainEqual(expect.objectContaining({ guard: "api-exposure", tier: "warning", seen: "W:0/0" }));
  }, 180_000);
});

/**
 * Miner guards end to end: the real plane (pool policy and indicators through its API, delivered as signed
 * set-policy commands), the compiled agent on a simulated board, and a simulated miner speaking the real cgminer
 * protocol. The attacker is another process on the "LAN" using addpool/switchpool; the plane quarantines by
 * policy. A second board stages a phone-home connection and /etc/ld.so.preload, and a malformed miner answer.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../../shared/crypto/index.js";
import { CLEAN_SOCKETS, writeSimulatedSockets } from "../../agent/src/sim-miner/index.js";
import { ApiClient } from "../support/api.js";
import { GuardedFleet, hijackFromAnotherProcess, type GuardedBoard } from "../support/guarded-board.js";
import { startControlPlane, type ControlPlane } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

const GOOD_POOL = "stratum+tcp://pool.example.net:3333";

let plane: ControlPlane;
let admin: ApiClient;
let fleet: GuardedFleet;

/** A guarded board; `extra` is merged into the agent's configuration. */
const startBoard = (name: string, extra: Record<string, unknown> = {}): Promise<GuardedBoard> => fleet.start(name, { agentConfig: extra });

const events = async (id: string) => (await admin.get(`/api/v1/devices/${id}/events`)).events as any[];
const guardAlerts = async (id: string) => (await events(id)).filter((e) => e.kind === "guard-alert");

beforeAll(async () => {
  plane = await startControlPlane();
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
  fleet = new GuardedFleet(plane, admin);
  await admin.ok("PUT", "/api/v1/policies/pools", { allowedUrls: [GOOD_POOL], workerPatterns: ["^farm\\.worker\\d+$"] });
  await admin.ok("PUT", "/api/v1/policies/indicators", {
    indicators: [
      { id: "antbuild-preload", kind: "file-present", path: "/etc/ld.so.preload", severity: "critical", description: "Antbuild malware: /etc/ld.so.preload" },
      // HW-GUARD-8: the plane fills in the approved reference digests of the device's model + firmware version.
      { id: "not-in-reference", kind: "unexpected-executable", paths: ["/firmware", "/tmp"], allowReferenceValues: true, severity: "critical", description: "an executable the reference values do not name" },
    ],
  });
}, 120_000);

afterAll(async () => {
  await fleet?.close();
  await plane?.proc.kill("SIGKILL");
});

describe("miner guards (real plane, compiled agent, simulated miner)", () => {
  it("addpool + switchpool from another process: guard-alert, contraindicated, quarantined by policy", async () => {
    const board = await startBoard("guard-hijack");
    expect(await guardAlerts(board.id)).toEqual([]);
    // Heartbeats carry the miner's telemetry (summary, stats, pools).
    const telemetry = await waitFor("telemetry in heartbeats", async () => (await admin.get(`/api/v1/devices/${board.id}`)).telemetry ?? undefined);
    expect(telemetry).toMatchObject({ hashrateGhs: 13512.34, activePool: GOOD_POOL, fanRpm: [5400, 5460, 5520, 5580] });
    await hijackFromAnotherProcess(board.miner.port);
    const view = await fleet.quarantined(board.id);
    expect(view.appraisal).toBe("contraindicated");
    const alerts = await guardAlerts(board.id);
    expect(alerts.map((e) => e.detail)).toContainEqual(expect.objectContaining({ guard: "pool-live", subject: "stratum+tcp://evil.example:3333", tier: "contraindicated" }));
    expect(readFileSync(join(board.root, "run/miner.state"), "utf8").trim()).toBe("stopped");
  }, 120_000);

  it("a phone-home connection, /etc/ld.so.preload and a malformed miner answer are reported (with evidence), each once", async () => {
    const board = await startBoard("guard-indicators", { logLevel: "debug" });
    writeSimulatedSockets(board.root, { v4: [...CLEAN_SOCKETS, { local: "192.168.1.20:40003", remote: "203.0.113.66:7000", state: "ESTABLISHED" }] });
    writeFileSync(join(board.root, "etc/ld.so.preload"), "/usr/lib/libsys.so\n");
    board.miner.fault = "malformed";
    const alerts = await waitFor("four guard alerts", async () => {
      const list = await guardAlerts(board.id);
      return list.length >= 4 && list;
    });
    expect(alerts.map((e) => `${e.detail.guard} ${e.detail.subject}`).sort()).toEqual([
      "connection 203.0.113.66:7000",
      "indicator /etc/ld.so.preload",
      `miner-api 127.0.0.1:${board.miner.port}`,
      // HW-MINER-1: live pools that cannot be read are "not observed", never clean.
      `pool-live 127.0.0.1:${board.miner.port}#pools`,
    ]);
    const view = await waitFor("contraindicated by the findings", async () => {
      const d = await admin.get(`/api/v1/devices/${board.id}`);
      return d.appraisal === "contraindicated" && d;
    });
    expect(JSON.stringify(view.lastAppraisal)).toContain("203.0.113.66:7000");
    // Three more guard cycles on the unchanged board (debug log line per cycle): still exactly four alerts.
    const cycles = () => board.proc.lines.filter((l) => l.msg === "guard cycle").length;
    const seen = cycles();
    await waitFor("three more guard cycles", () => cycles() >= seen + 3);
    expect(await guardAlerts(board.id)).toHaveLength(4);
  }, 120_000);

  it("HW-GUARD-8: an executable whose sha256 is not in the approved reference values is reported with {path, sha256, size}", async () => {
    const board = await startBoard("guard-executables");
    const policy = await admin.get(`/api/v1/devices/${board.id}/policy`);
    const indicator = policy.policy.indicators.find((i: { id: string }) => i.id === "not-in-reference");
    expect(indicator.allowedSha256.length).toBeGreaterThan(0); // the reference digests, sent signed
    mkdirSync(join(board.root, "tmp"), { recursive: true });
    writeFileSync(join(board.root, "tmp/.payload"), "#!/bin/sh\necho dropped\n", { mode: 0o755 });
    const alert = await waitFor("executable alert", async () => (await guardAlerts(board.id)).find((e) => e.detail.subject === "/tmp/.payload"));
    expect(alert.detail).toMatchObject({ guard: "indicator", tier: "contraindicated", seen: { path: "/tmp/.payload", sha256: sha256Hex("#!/bin/sh\necho dropped\n"), size: 23 } });
    expect((await guardAlerts(board.id)).map((e) => e.detail.subject)).toEqual(["/tmp/.payload"]); // the firmware's own executables are known
    await waitFor("contraindicated by the finding", async () => (await admin.get(`/api/v1/devices/${board.id}`)).appraisal === "contraindicated");
  }, 120_000);
});

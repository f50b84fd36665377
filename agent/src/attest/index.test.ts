import { appendFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { evidenceSchema, generateKeyPair, verifySignedObject, deviceIdFromPublicKey } from "../../../shared/index.js";
import { silentLogger } from "../log/index.js";
import { createSimulatedBoard, SIMULATED_MEASURE_PATHS } from "../platform/index.js";
import { StateStore } from "../state/index.js";
import { tempDir, waitFor } from "../testing/index.js";
import { Attester, watchPaths } from "./index.js";

describe("attestation", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((c) => c()));

  function setup() {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const board = createSimulatedBoard(join(dir.path, "board"), { model: "S19" });
    const key = generateKeyPair();
    const deviceId = deviceIdFromPublicKey(key.publicKey);
    const state = StateStore.open(join(dir.path, "state"), deviceId);
    const attester = new Attester({
      deviceId,
      privateKey: key.privateKey,
      state,
      platform: board,
      measurePaths: SIMULATED_MEASURE_PATHS,
      includeAgentBinary: true,
      model: "S19",
      firmwareVersion: "1.0.0",
      agentVersion: "0.1.0",
      bootId: "boot-1",
      now: () => 42,
      log: silentLogger(),
    });
    return { dir, board, key, state, attester };
  }

  it("produces schema-valid signed evidence with a persisted, increasing seq", async () => {
    const s = setup();
    const e1 = await s.attester.evidence("startup", null);
    const e2 = await s.attester.evidence("challenge", "abcdefghijklmnopqrstuv");
    evidenceSchema.parse(e1);
    verifySignedObject(e2, s.key.publicKey);
    expect([e1.seq, e2.seq]).toEqual([1, 2]);
    expect(e2).toMatchObject({ reason: "challenge", nonce: "abcdefghijklmnopqrstuv", ts: 42, bootId: "boot-1" });
    // Under vitest execPath is node: no @agent entry.
    expect(e1.measurements.some((m) => m.path === "@agent")).toBe(false);
    const persisted = JSON.parse(readFileSync(join(s.dir.path, "state", "state.json"), "utf8")) as { evidenceSeq: number };
    expect(persisted.evidenceSeq).toBe(2);
    await expect(s.attester.evidence("challenge", null)).rejects.toThrow(TypeError);
    await expect(s.attester.evidence("timer", "abcdefghijklmnopqrstuv")).rejects.toThrow(TypeError);
  });

  it("re-measures when an update commits during the measurement: version and files describe one state", async () => {
    const s = setup();
    const reads: string[] = [];
    // The version reads "1.0.0" until the first measurement has resolved its paths (the commit lands mid-read).
    let committed = false;
    const attester = new Attester({
      deviceId: deviceIdFromPublicKey(s.key.publicKey),
      privateKey: s.key.privateKey,
      state: s.state,
      platform: {
        ...s.board,
        resolve: (p: string) => {
          reads.push(p);
          const resolved = s.board.resolve(p);
          committed = true;
          return resolved;
        },
      } as typeof s.board,
      measurePaths: SIMULATED_MEASURE_PATHS,
      includeAgentBinary: false,
      model: "S19",
      get firmwareVersion() {
        return committed ? "2.0.0" : "1.0.0";
      },
      agentVersion: "0.1.0",
      bootId: "boot-1",
      now: () => 42,
      log: silentLogger(),
    });
    const evidence = await attester.evidence("update", null);
    expect(evidence.firmwareVersion).toBe("2.0.0");
    expect(reads.length).toBe(2 * SIMULATED_MEASURE_PATHS.length); // measured again after the version changed
  });

  it.each([false, true])("reports a changed watched path once, debounced (forcePoll=%s)", async (forcePoll) => {
    const s = setup();
    const changes: string[][] = [];
    const handle = watchPaths(
      SIMULATED_MEASURE_PATHS.map((devicePath) => ({ devicePath, hostPath: s.board.resolve(devicePath) })),
      (paths) => changes.push(paths),
      { log: silentLogger(), debounceMs: 50, pollMs: 20, forcePoll },
    );
    cleanups.push(() => handle.close());
    expect(Object.values(handle.modes).every((m) => m === (forcePoll ? "poll" : "inotify"))).toBe(true);
    await handle.ready;
    appendFileSync(s.board.resolve("/firmware/lib/libcgminer.so"), "trojan");
    appendFileSync(s.board.resolve("/firmware/lib/libcgminer.so"), "more");
    await waitFor("change reported", () => changes.length > 0);
    expect(changes[0]).toEqual(["/firmware"]);
  });
});

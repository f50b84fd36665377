import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, FreshnessError, generateKeyPair, PROTOCOL_VERSION, signObject, VerificationError, type Ack } from "../../../shared/index.js";
import { refuseWrites, tempDirPool } from "../testing/index.js";
import { HEARTBEAT_SEQ_BLOCK, StateStore, StateWriteError } from "./index.js";

const deviceId = "hw-0123456789abcdef01234567";
const key = generateKeyPair();
const ack = (seq: number): Ack =>
  signObject({ v: PROTOCOL_VERSION, type: "ack" as const, deviceId, seq, action: "quarantine" as const, status: "done" as const, containment: "quarantined" as const, ts: 1 }, key.privateKey);

describe("state store", () => {
  const dirs = tempDirPool();
  afterEach(dirs.cleanup);
  const dir = () => dirs.make();

  it("persists every change atomically with mode 0600 and reloads it", () => {
    const stateDir = dir();
    const store = StateStore.open(stateDir, deviceId);
    expect(store.nextEvidenceSeq()).toBe(1);
    expect(store.nextEvidenceSeq()).toBe(2);
    expect(store.nextHeartbeatSeq()).toBe(1);
    store.recordCommand(5, "sig5", ack(5), "quarantined");
    expect(statSync(join(stateDir, "state.json")).mode & 0o777).toBe(0o600);
    const reloaded = StateStore.open(stateDir, deviceId);
    expect(reloaded.snapshot).toMatchObject({ evidenceSeq: 2, lastCommandSeq: 5, containment: "quarantined" });
    expect(reloaded.nextEvidenceSeq()).toBe(3);
  });

  it("reserves heartbeat seqs in blocks: one write per block, still increasing across restarts", () => {
    const stateDir = dir();
    const store = StateStore.open(stateDir, deviceId);
    const file = join(stateDir, "state.json");
    expect(store.nextHeartbeatSeq()).toBe(1);
    const afterFirst = statSync(file).ino;
    for (let i = 2; i <= HEARTBEAT_SEQ_BLOCK; i++) expect(store.nextHeartbeatSeq()).toBe(i);
    expect(statSync(file).ino).toBe(afterFirst); // no rewrite (atomic writes replace the inode)
    expect(store.nextHeartbeatSeq()).toBe(HEARTBEAT_SEQ_BLOCK + 1);
    expect(statSync(file).ino).not.toBe(afterFirst);
    const reloaded = StateStore.open(stateDir, deviceId);
    expect(reloaded.nextHeartbeatSeq()).toBe(2 * HEARTBEAT_SEQ_BLOCK + 1);
  });

  it("only accepts increasing command seqs and keeps state unchanged on refusal", () => {
    const store = StateStore.open(dir(), deviceId);
    store.recordCommand(3, "sig3", ack(3), "quarantined");
    expect(() => store.recordCommand(3, "other", ack(3), "none")).toThrow(FreshnessError);
    expect(() => store.recordCommand(2, "sig2", ack(2), "none")).toThrow(FreshnessError);
    expect(() => store.recordCommand(4, "sig4", ack(5), "none")).toThrow(FreshnessError);
    expect(store.snapshot).toMatchObject({ lastCommandSeq: 3, containment: "quarantined" });
    expect(store.storedAckFor(3, "sig3")?.seq).toBe(3);
    expect(store.storedAckFor(3, "other")).toBeNull();
  });

  it("pins the command key once and never replaces it", () => {
    const store = StateStore.open(dir(), deviceId);
    const a = "A".repeat(43);
    store.pinCommandKey(a);
    store.pinCommandKey(a);
    expect(() => store.pinCommandKey("B".repeat(43))).toThrow(VerificationError);
    expect(store.commandPublicKey).toBe(a);
  });

  it("refuses a corrupt state file or one that belongs to another key", () => {
    const stateDir = dir();
    StateStore.open(stateDir, deviceId);
    expect(() => StateStore.open(stateDir, "hw-ffffffffffffffffffffffff")).toThrow(ConfigError);
    const file = join(stateDir, "state.json");
    const original = readFileSync(file, "utf8");
    writeFileSync(file, original.replace('"lastCommandSeq": 0', '"lastCommandSeq": -1'));
    expect(() => StateStore.open(stateDir, deviceId)).toThrow(expect.objectContaining({ option: "stateDir" }));
  });

  it("HW-FAULT-10: on a state dir that refuses writes, seqs and a quarantine live in memory, a release is refused, and everything lands once writes work", () => {
    const stateDir = dir();
    const reports: string[] = [];
    const store = StateStore.open(stateDir, deviceId, {
      notPersisted: ({ code }) => reports.push(`failed ${code}`),
      persisted: () => reports.push("persisted"),
    });
    const file = join(stateDir, "state.json");
    const restore = refuseWrites(stateDir);
    try {
      expect(store.nextEvidenceSeq()).toBe(1);
      expect(store.nextHeartbeatSeq()).toBe(1);
      store.recordCommand(1, "sig1", ack(1), "quarantined");
      expect(store.snapshot).toMatchObject({ evidenceSeq: 1, lastCommandSeq: 1, containment: "quarantined" });
      expect(store.pending).toBe(true);
      expect(store.writeFailure).toMatch(/cannot write .*state\.json/);
      const release = { ...ack(2), containment: "none" as const };
      expect(() => store.recordCommand(2, "sig2", release, "none")).toThrow(StateWriteError);
      expect(store.snapshot).toMatchObject({ lastCommandSeq: 1, containment: "quarantined" }); // nothing changed
      expect(store.retryPending()).toBe(false);
      expect(reports).toHaveLength(1); // once per episode
    } finally {
      restore();
    }
    expect(JSON.parse(readFileSync(file, "utf8"))).toMatchObject({ containment: "none", evidenceSeq: 0 }); // the old file, whole
    expect(store.retryPending()).toBe(true);
    expect(reports).toEqual([expect.stringMatching(/^failed /), "persisted"]);
    expect(StateStore.open(stateDir, deviceId).snapshot).toMatchObject({ evidenceSeq: 1, lastCommandSeq: 1, containment: "quarantined", heartbeatSeq: HEARTBEAT_SEQ_BLOCK });
  });
});

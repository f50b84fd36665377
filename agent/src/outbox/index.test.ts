import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { generateKeyPair, verifySignedObject, type DeviceEvent } from "../../../shared/index.js";
import { silentLogger } from "../log/index.js";
import { refuseWrites, tempDirPool } from "../testing/index.js";
import { createEvent, Outbox, type OutboxMessage } from "./index.js";

const deviceId = "hw-0123456789abcdef01234567";
const key = generateKeyPair();
/** The number `ev(n)` carries (in its watched path); undefined for any other event. */
const nOf = (e: DeviceEvent): number | undefined => (e.kind === "watch-change" ? Number((e.detail["paths"] as string[])[0]!.split("/").pop()) : undefined);
const ev = (n: number): OutboxMessage => ({ kind: "event", message: createEvent(deviceId, key.privateKey, "watch-change", "info", { paths: [`/config/${n}`] }, n) });

function open(dir: string, maxEvents: number) {
  return new Outbox({
    dir,
    maxEvents,
    log: silentLogger(),
    overflowEvent: (dropped) => createEvent(deviceId, key.privateKey, "outbox-overflow", "warning", { dropped, maxEvents }, 0),
  });
}

describe("outbox", () => {
  const dirs = tempDirPool();
  afterEach(dirs.cleanup);
  const dir = () => join(dirs.make(), "outbox");

  it("keeps entries on disk across restarts and sends them in order, deleting each after its ack", async () => {
    const d = dir();
    const box = open(d, 10);
    for (let i = 1; i <= 3; i++) box.enqueue(ev(i));
    const reopened = open(d, 10);
    expect(reopened.depth).toBe(3);
    const sent: number[] = [];
    await reopened.flush(async (entry) => {
      sent.push(nOf(entry.message as DeviceEvent)!);
    });
    expect(sent).toEqual([1, 2, 3]);
    expect(reopened.depth).toBe(0);
    expect(readdirSync(d)).toEqual([]);
  });

  it("stops at the first failed publish and resumes from there", async () => {
    const box = open(dir(), 10);
    for (let i = 1; i <= 3; i++) box.enqueue(ev(i));
    const sent: number[] = [];
    let fail = true;
    const publish = async (entry: OutboxMessage) => {
      const n = nOf(entry.message as DeviceEvent)!;
      if (n === 2 && fail) {
        fail = false;
        throw new Error("link down");
      }
      sent.push(n);
    };
    await expect(box.flush(publish)).rejects.toThrow("link down");
    expect(box.depth).toBe(2);
    await box.flush(publish);
    expect(sent).toEqual([1, 2, 3]);
  });

  it("is bounded: drops the oldest and reports an outbox-overflow event first", async () => {
    const d = dir();
    const box = open(d, 3);
    for (let i = 1; i <= 7; i++) box.enqueue(ev(i));
    expect(box.droppedTotal).toBe(4);
    expect(box.depth).toBe(4); // 3 entries + the pending overflow report
    // The dropped count survives a restart.
    const reopened = open(d, 3);
    const sent: OutboxMessage[] = [];
    await reopened.flush(async (entry) => {
      sent.push(entry);
    });
    const [overflow, ...rest] = sent.map((s) => s.message as DeviceEvent);
    expect(overflow).toMatchObject({ kind: "outbox-overflow", detail: { dropped: 4 } });
    verifySignedObject(overflow!, key.publicKey);
    expect(rest.map(nOf)).toEqual([5, 6, 7]);
    expect(reopened.depth).toBe(0);
    expect(open(d, 3).depth).toBe(0);
  });

  it("stores acks too", async () => {
    const box = open(dir(), 5);
    box.enqueue(ev(1));
    box.enqueue({ kind: "ack", message: { v: 1, type: "ack", deviceId, seq: 1, action: "release", status: "done", containment: "none", ts: 1, sig: "x".repeat(86) } });
    const kinds: string[] = [];
    await box.flush(async (e) => {
      kinds.push(e.kind);
    });
    expect(kinds).toEqual(["event", "ack"]);
  });

  it("never drops an ack to make room: the oldest events go instead", async () => {
    const box = open(dir(), 3);
    const ack = (seq: number): OutboxMessage => ({
      kind: "ack",
      message: { v: 1, type: "ack", deviceId, seq, action: "quarantine", status: "done", containment: "quarantined", ts: 1, sig: "x".repeat(86) },
    });
    box.enqueue(ack(1));
    for (let i = 1; i <= 5; i++) box.enqueue(ev(i));
    const sent: OutboxMessage[] = [];
    await box.flush(async (entry) => {
      sent.push(entry);
    });
    expect(sent.filter((e) => e.kind === "ack").map((e) => (e.message as { seq: number }).seq)).toEqual([1]);
    expect(sent.filter((e) => e.kind === "event").map((e) => nOf(e.message as DeviceEvent) ?? "overflow")).toEqual(["overflow", 4, 5]);
  });

  it("HW-FAULT-10: an entry the state dir refuses is kept in memory in its place, sent, and written once space returns", async () => {
    const d = dir();
    const box = open(d, 10);
    box.enqueue(ev(1));
    const restore = refuseWrites(d);
    try {
      box.enqueue(ev(2));
      box.enqueue(ev(3));
      expect(box.unwrittenCount).toBe(2);
      box.persistPending(); // still refused: nothing lost, nothing thrown
      expect(box.unwrittenCount).toBe(2);
    } finally {
      restore();
    }
    box.persistPending();
    expect(box.unwrittenCount).toBe(0);
    expect(open(d, 10).depth).toBe(3); // all three survive a restart now
    const sent: number[] = [];
    await box.flush(async (entry) => void sent.push(nOf(entry.message as DeviceEvent)!));
    expect(sent).toEqual([1, 2, 3]);
    expect(readdirSync(d).filter((f) => f.endsWith(".json"))).toEqual([]);
  });

  it("HW-FAULT-10: entries kept in memory are sent in order with the ones on disk", async () => {
    const d = dir();
    const box = open(d, 10);
    box.enqueue(ev(1));
    const restore = refuseWrites(d);
    try {
      box.enqueue(ev(2)); // memory only
    } finally {
      restore(); // entry 1 readable again; entry 2 is still not written
    }
    expect(box.unwrittenCount).toBe(1);
    const sent: number[] = [];
    await box.flush(async (entry) => void sent.push(nOf(entry.message as DeviceEvent)!));
    expect(sent).toEqual([1, 2]);
    expect(box.depth).toBe(0);
  });

  it("keeps one copy of an ack that is already waiting: redeliveries of a command do not pile up behind it", async () => {
    const box = open(dir(), 100);
    const ack = (seq: number): OutboxMessage => ({
      kind: "ack",
      message: { v: 1, type: "ack", deviceId, seq, action: "quarantine", status: "done", containment: "quarantined", ts: 1, sig: "x".repeat(86) },
    });
    expect(box.enqueue(ack(1))).toBe(true);
    // The plane re-publishes seq 1 until the ack is recorded; each redelivery re-sends the stored ack.
    for (let i = 0; i < 50; i++) expect(box.enqueue(ack(1))).toBe(false);
    expect(box.enqueue(ack(2))).toBe(true);
    expect(box.enqueue(ack(2))).toBe(false);
    expect(box.depth).toBe(2);
    const sent: number[] = [];
    await box.flush(async (entry) => {
      sent.push((entry.message as { seq: number }).seq);
    });
    expect(sent).toEqual([1, 2]);
    // Once sent (PUBACK), a later redelivery queues the ack again: the plane may not have recorded it.
    expect(box.enqueue(ack(2))).toBe(true);
    expect(box.depth).toBe(1);
  });
});

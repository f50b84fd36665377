import { afterEach, describe, expect, it } from "vitest";
import { commandSchema, DEVICE_EVENT_DETAIL, encodePayload, generateKeyPair, parsePayload, signObject, verifySignedObject, type Command, type DeviceEvent } from "../../../shared/index.js";
import { silentLogger } from "../log/index.js";
import type { OutboxMessage } from "../outbox/index.js";
import { RecordingPlatform } from "../platform/testing/index.js";
import { StateStore } from "../state/index.js";
import { PlaneSigner, refuseWrites, tempDir } from "../testing/index.js";
import { CommandHandler } from "./index.js";

const deviceId = "hw-0123456789abcdef01234567";
const deviceKey = generateKeyPair();

type Updater = NonNullable<ConstructorParameters<typeof CommandHandler>[0]["updater"]>;

function setup(opts: { pin?: boolean; stateDir?: string; platform?: RecordingPlatform; updater?: Updater } = {}) {
  const dir = opts.stateDir ? { path: opts.stateDir, cleanup: () => {} } : tempDir();
  const plane = new PlaneSigner();
  const state = StateStore.open(dir.path, deviceId);
  if (opts.pin !== false) state.pinCommandKey(plane.publicKey);
  const platform = opts.platform ?? new RecordingPlatform();
  const sent: OutboxMessage[] = [];
  const attests: (string | null)[] = [];
  let nowMs = 1_700_000_000_000;
  const handler = new CommandHandler({
    deviceId,
    privateKey: deviceKey.privateKey,
    state,
    platform,
    controlPlaneHosts: () => ["mqtt.example.net", "plane.example.net"],
    send: (entry) => {
      // Every event the handler writes has its kind's detail (shared/protocol/events.ts).
      if (entry.kind === "event") DEVICE_EVENT_DETAIL[entry.message.kind].parse(entry.message.detail);
      sent.push(entry);
    },
    attestNow: async (nonce) => {
      attests.push(nonce);
    },
    now: () => nowMs,
    log: silentLogger(),
    ...(opts.updater ? { updater: opts.updater } : {}),
  });
  return { dir, plane, state, platform, sent, attests, handler, now: () => nowMs, setNow: (v: number) => (nowMs = v) };
}

const events = (sent: OutboxMessage[]) => sent.filter((s) => s.kind === "event").map((s) => s.message as DeviceEvent);
const acks = (sent: OutboxMessage[]) => sent.filter((s) => s.kind === "ack").map((s) => s.message);

describe("command handling", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((c) => c()));
  const make = (opts?: Parameters<typeof setup>[0]) => {
    const s = setup(opts);
    cleanups.push(s.dir.cleanup);
    return s;
  };

  it("executes a valid quarantine: platform call, persisted state, signed ack", async () => {
    const s = make();
    const outcome = await s.handler.handle(s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now() }));
    expect(outcome.result).toBe("executed");
    expect(s.platform.calls).toEqual([{ op: "quarantine", opts: { controlPlaneHosts: ["mqtt.example.net", "plane.example.net"] } }]);
    expect(s.state.snapshot).toMatchObject({ lastCommandSeq: 1, containment: "quarantined" });
    const [ack] = acks(s.sent);
    expect(ack).toMatchObject({ type: "ack", seq: 1, action: "quarantine", status: "done", containment: "quarantined" });
    verifySignedObject(ack!, deviceKey.publicKey);
    expect(events(s.sent).map((e) => e.kind)).toEqual(["quarantine-enforced"]);
  });

  it("release lifts quarantine", async () => {
    const s = make();
    await s.handler.handle(s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now() }));
    await s.handler.handle(s.plane.command(deviceId, 2, "release", { nowMs: s.now() }));
    expect(s.platform.calls.map((c) => c.op)).toEqual(["quarantine", "release"]);
    expect(s.state.containment).toBe("none");
    expect(acks(s.sent).at(-1)).toMatchObject({ seq: 2, status: "done", containment: "none" });
  });

  it.each([
    ["forged (wrong key)", (s: ReturnType<typeof setup>) => s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now(), key: generateKeyPair() }), /signature/],
    ["tampered", (s: ReturnType<typeof setup>) => ({ ...s.plane.command(deviceId, 1, "release", { nowMs: s.now() }), action: "quarantine" as const }), /signature/],
    ["wrong device", (s: ReturnType<typeof setup>) => s.plane.command("hw-ffffffffffffffffffffffff", 1, "quarantine", { nowMs: s.now() }), /addressed to/],
    ["expired", (s: ReturnType<typeof setup>) => s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now() - 120_000, ttlMs: 60_000 }), /expired/],
  ])("rejects a %s command, changes nothing, reports a signed command-rejected event", async (_name, build, reason) => {
    const s = make();
    const outcome = await s.handler.handle(build(s));
    expect(outcome.result).toBe("rejected");
    expect(s.platform.calls).toEqual([]);
    expect(s.state.snapshot).toMatchObject({ lastCommandSeq: 0, containment: "none", lastAck: null });
    expect(acks(s.sent)).toEqual([]);
    const [event] = events(s.sent);
    expect(event).toMatchObject({ kind: "command-rejected", detail: { seq: 1, reason: expect.stringMatching(reason) } });
    verifySignedObject(event!, deviceKey.publicKey);
  });

  it("reports a rejected command once, however often the plane redelivers it (HW-FAULT-11: a clock off by hours)", async () => {
    const s = make();
    const stale = s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now() - 120_000, ttlMs: 60_000 });
    for (let i = 0; i < 5; i++) expect((await s.handler.handle(stale)).result).toBe("rejected");
    expect(events(s.sent).map((e) => e.kind)).toEqual(["command-rejected"]);
    await s.handler.handle(s.plane.command(deviceId, 2, "quarantine", { nowMs: s.now() - 120_000, ttlMs: 60_000 }));
    expect(events(s.sent).map((e) => e.kind)).toEqual(["command-rejected", "command-rejected"]); // another command: reported
  });

  it("rejects every command while no plane key is pinned", async () => {
    const s = make({ pin: false });
    const outcome = await s.handler.handle(s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now() }));
    expect(outcome).toMatchObject({ result: "rejected", reason: expect.stringContaining("pinned") });
    expect(s.platform.calls).toEqual([]);
  });

  it("re-sends the stored ack for an exact redelivery and rejects a replay with another signature", async () => {
    const s = make();
    const command = s.plane.command(deviceId, 7, "quarantine", { nowMs: s.now() });
    const first = await s.handler.handle(command);
    const stateAfter = s.state.snapshot;
    // Redelivered long after: still re-acked (expiry does not matter for an already executed command).
    s.setNow(s.now() + 3_600_000);
    const again = await s.handler.handle(command);
    expect(again).toEqual({ result: "re-acked", ack: (first as { ack: unknown }).ack });
    expect(s.platform.calls).toHaveLength(1);
    expect(s.state.snapshot).toEqual(stateAfter);
    const replay = s.plane.command(deviceId, 7, "release", { nowMs: s.now() });
    expect((await s.handler.handle(replay)).result).toBe("rejected");
    const older = s.plane.command(deviceId, 6, "release", { nowMs: s.now() });
    expect(await s.handler.handle(older)).toMatchObject({ result: "rejected", reason: expect.stringMatching(/replay/) });
    expect(s.state.containment).toBe("quarantined");
    expect(acks(s.sent)).toHaveLength(2);
  });

  it("refuses an action outside the protocol at parse (rotate-key: removed) and runs attest-now with and without nonce", async () => {
    const s = make();
    // A signed command whose action the protocol does not define is dropped by the session's parse (session.ts),
    // naming the field, before anything runs.
    const rotate = s.plane.command(deviceId, 1, "rotate-key" as Command["action"], { nowMs: s.now() });
    expect(() => parsePayload(commandSchema, encodePayload(rotate), "command")).toThrow(expect.objectContaining({ field: "action" }));
    await s.handler.handle(s.plane.command(deviceId, 2, "attest-now", { nowMs: s.now() }));
    await s.handler.handle(s.plane.command(deviceId, 3, "attest-now", { nowMs: s.now(), params: { nonce: "n".repeat(22) } }));
    expect(s.attests).toEqual([null, "n".repeat(22)]);
    expect(s.state.lastCommandSeq).toBe(3);
  });

  it("acks failed when the platform fails, and keeps the seq consumed", async () => {
    const platform = new RecordingPlatform();
    platform.failNext = new Error("iptables missing");
    const s = make({ platform });
    const outcome = await s.handler.handle(s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now() }));
    expect(outcome).toMatchObject({ result: "executed", ack: { status: "failed", containment: "none", reason: expect.stringContaining("iptables missing") } });
    expect(events(s.sent).map((e) => e.kind)).toEqual(["platform-error"]);
    expect(s.state.lastCommandSeq).toBe(1);
  });

  it("handles concurrent deliveries one at a time", async () => {
    const s = make();
    const c1 = s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now() });
    const c2 = s.plane.command(deviceId, 2, "release", { nowMs: s.now() });
    const results = await Promise.all([s.handler.handle(c1), s.handler.handle(c1), s.handler.handle(c2)]);
    expect(results.map((r) => r.result)).toEqual(["executed", "re-acked", "executed"]);
    expect(s.state.snapshot).toMatchObject({ lastCommandSeq: 2, containment: "none" });
  });

  it("signObject output is accepted unchanged (sanity for the fake signer)", () => {
    const plane = new PlaneSigner();
    const c = plane.command(deviceId, 1, "release");
    expect(signObject(c, plane.keyPair.privateKey)).toEqual(c);
  });

  describe("updates run in the background (HW-Q-3)", () => {
    /** An updater whose install finishes only when the test says so, like a long download. */
    function slowUpdater() {
      let finish!: (outcome: { status: "done" | "failed"; reason?: string }) => void;
      const calls: number[] = [];
      const commands: Command[] = [];
      const updater: Updater = {
        handle: (command) => {
          calls.push(command.seq);
          commands.push(command);
          return new Promise((resolve) => (finish = resolve));
        },
      };
      return { updater, calls, commands, finish: (outcome: { status: "done" | "failed"; reason?: string }) => finish(outcome) };
    }

    it("a quarantine sent during an update is executed at once; the update acks when it finishes", async () => {
      const slow = slowUpdater();
      const s = make({ updater: slow.updater });
      const update = s.plane.command(deviceId, 1, "update", { nowMs: s.now(), params: { targetName: "fw-2.0" } });
      expect(await s.handler.handle(update)).toEqual({ result: "started" });
      expect(s.state.snapshot.lastCommandSeq).toBe(1);

      const quarantine = await s.handler.handle(s.plane.command(deviceId, 2, "quarantine", { nowMs: s.now() }));
      expect(quarantine).toMatchObject({ result: "executed", ack: { seq: 2, status: "done", containment: "quarantined" } });
      expect(acks(s.sent).map((a) => a.seq)).toEqual([2]);

      // Redelivered while it runs: ignored, nothing started twice.
      expect(await s.handler.handle(update)).toEqual({ result: "in-progress" });
      expect(slow.calls).toEqual([1]);

      slow.finish({ status: "done" });
      await s.handler.idle();
      const updateAck = acks(s.sent).find((a) => a.seq === 1);
      expect(updateAck).toMatchObject({ action: "update", status: "done", containment: "quarantined" });
      verifySignedObject(updateAck!, deviceKey.publicKey);
      // Redelivered after it finished: the stored ack again.
      expect(await s.handler.handle(update)).toEqual({ result: "re-acked", ack: updateAck });
    });

    it("refuses a second update while one runs, and a replay of the first after a newer command", async () => {
      const slow = slowUpdater();
      const s = make({ updater: slow.updater });
      await s.handler.handle(s.plane.command(deviceId, 1, "update", { nowMs: s.now(), params: { targetName: "a" } }));
      const second = await s.handler.handle(s.plane.command(deviceId, 2, "update", { nowMs: s.now(), params: { targetName: "b" } }));
      expect(second).toMatchObject({ result: "executed", ack: { seq: 2, status: "failed", reason: expect.stringContaining("in progress") } });
      expect(slow.calls).toEqual([1]);
      slow.finish({ status: "failed", reason: "rejected: hash mismatch" });
      await s.handler.idle();
      expect(acks(s.sent).find((a) => a.seq === 1)).toMatchObject({ status: "failed", reason: "rejected: hash mismatch" });
    });

    it("resumes an accepted update after a restart when the plane redelivers it", async () => {
      const dir = tempDir();
      cleanups.push(dir.cleanup);
      const first = setup({ stateDir: dir.path, updater: slowUpdater().updater });
      const update = first.plane.command(deviceId, 1, "update", { nowMs: first.now(), params: { targetName: "fw" } });
      await first.handler.handle(update); // the process "dies" with the update running

      const resumed = slowUpdater();
      const again = setup({ stateDir: dir.path, pin: false, updater: resumed.updater });
      // A redelivery with the recorded sig but another body (a broker attacker) resumes the VERIFIED copy.
      const tampered = { ...update, params: { targetName: "fw-attacker-choice" }, expiresAt: update.expiresAt + 3_600_000 };
      expect(await again.handler.handle(tampered)).toEqual({ result: "started" });
      expect(resumed.commands.map((c) => c.params)).toEqual([{ targetName: "fw" }]);
      resumed.finish({ status: "done" });
      await again.handler.idle();
      expect(acks(again.sent)).toMatchObject([{ seq: 1, status: "done" }]);
    });

    it("does not resume an accepted update that expired while the agent was down", async () => {
      const dir = tempDir();
      cleanups.push(dir.cleanup);
      const first = setup({ stateDir: dir.path, updater: slowUpdater().updater });
      const update = first.plane.command(deviceId, 1, "update", { nowMs: first.now(), ttlMs: 1000, params: { targetName: "fw" } });
      await first.handler.handle(update);

      const resumed = slowUpdater();
      const again = setup({ stateDir: dir.path, pin: false, updater: resumed.updater });
      again.setNow(first.now() + 5000);
      expect(await again.handler.handle(update)).toMatchObject({ result: "executed", ack: { seq: 1, status: "failed", reason: expect.stringContaining("expired") } });
      expect(resumed.calls).toEqual([]);
    });
  });

  it("HW-FAULT-10: on a state dir that refuses writes a quarantine is enforced and acked, a release is refused and the board stays quarantined", async () => {
    const s = make();
    const restore = refuseWrites(s.dir.path);
    try {
      await s.handler.handle(s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now() }));
      expect(acks(s.sent).at(-1)).toMatchObject({ seq: 1, status: "done", containment: "quarantined" });
      expect(s.state.containment).toBe("quarantined");
      await s.handler.handle(s.plane.command(deviceId, 2, "release", { nowMs: s.now() }));
      expect(acks(s.sent).at(-1)).toMatchObject({ seq: 2, status: "failed", containment: "quarantined", reason: expect.stringMatching(/^release not recorded, quarantine kept: cannot write /) });
      expect(s.platform.calls.map((c) => c.op)).toEqual(["quarantine"]); // never released, not even for a moment
      expect(s.state.containment).toBe("quarantined");
    } finally {
      restore();
    }
    await s.handler.handle(s.plane.command(deviceId, 3, "release", { nowMs: s.now() }));
    expect(acks(s.sent).at(-1)).toMatchObject({ seq: 3, status: "done", containment: "none" });
    expect(StateStore.open(s.dir.path, deviceId).snapshot).toMatchObject({ lastCommandSeq: 3, containment: "none" });
  });

  it("HW-FAULT-10: an update that cannot be accepted for a full state dir is acked failed, nothing recorded", async () => {
    const s = make({ updater: { handle: async () => ({ status: "done" }) } });
    const restore = refuseWrites(s.dir.path);
    try {
      await s.handler.handle(s.plane.command(deviceId, 1, "update", { nowMs: s.now(), params: { targetName: "fw" } }));
    } finally {
      restore();
    }
    expect(acks(s.sent).at(-1)).toMatchObject({ seq: 1, status: "failed", reason: expect.stringMatching(/^update not accepted: cannot write /) });
    expect(s.state.lastCommandSeq).toBe(0);
  });

  it("HW-FAULT-10: a release whose record is refused only after it ran is undone: quarantined again, acked failed", async () => {
    const s = make();
    await s.handler.handle(s.plane.command(deviceId, 1, "quarantine", { nowMs: s.now() }));
    const restore = refuseWrites(s.dir.path); // the disk fills between the quarantine and the release
    try {
      await s.handler.handle(s.plane.command(deviceId, 2, "release", { nowMs: s.now() }));
    } finally {
      restore();
    }
    expect(s.platform.calls.map((c) => c.op)).toEqual(["quarantine", "release", "quarantine"]);
    expect(acks(s.sent).at(-1)).toMatchObject({ seq: 2, status: "failed", containment: "quarantined", reason: expect.stringMatching(/^release not recorded, quarantine kept: cannot write /) });
    expect(s.state.containment).toBe("quarantined");
  });
});

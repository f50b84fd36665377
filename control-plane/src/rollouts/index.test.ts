/**
 * The rollout engine over a real database (PGlite) with a recording publisher and a fake clock: devices answer
 * through the real device-side service (signed acks and update-progress events), the engine advances or stops.
 */
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, type KeyPair, signObject, toBase64Url } from "../../../shared/crypto/index.js";
import { ValidationError } from "../../../shared/errors/index.js";
import { type Command, verifyCommand } from "../../../shared/protocol/index.js";
import { eq } from "drizzle-orm";
import { type Database, devices, planeEvents } from "../db/index.js";
import { onEveryDatabase, type TestDatabase } from "../db/test-postgres.js";
import { ConflictError, NotFoundError } from "../errors.js";
import { createServiceContext, createServices, type DevicePublisher, type Services } from "../service/index.js";
import type { TargetView } from "../tuf/index.js";
import { createRolloutService, planGroups, type RolloutService } from "./index.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";

const OPTIONS = { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "off" as const };
const TARGET: TargetView = { name: "fw-s19-2.0.0", length: 10, sha256: "a".repeat(64), hardwareModels: ["S19"], version: "2.0.0", referenceMeasurements: [], targetsVersion: 1 };

class RecordingPublisher implements DevicePublisher {
  commands: Command[] = [];
  async publish(_deviceId: string, kind: "challenge" | "command", message: never): Promise<void> {
    if (kind === "command") this.commands.push(message as Command);
  }
  isConnected(): boolean {
    return true;
  }
}

function contract(backend: string, open: () => Promise<TestDatabase>) {
  describe(`rollout engine (${backend})`, () => {
    const dirs = tempDirPool("rollout");
    let dir: string;
    let db: Database;
    let close: () => Promise<void>;
    let services: Services;
    let rollouts: RolloutService;
    let clock = Date.UTC(2030, 0, 1);
    let eventNo = 0;
    const publisher = new RecordingPublisher();
    const commandKey = generateKeyPair();
    const operator = { kind: "operator", id: "tok_op", role: "operator" } as const;
    const fleet: Array<{ id: string; key: KeyPair }> = [];
    /** Ten more devices (model T21) for the late-failure cases. */
    const farm: Array<{ id: string; key: KeyPair }> = [];

    beforeAll(async () => {
      dir = dirs.make();
      ({ db, close } = await open());
      const logger = pino({ level: "silent" });
      services = createServices({ db, publisher, commandKey, logger, now: () => clock, options: OPTIONS });
      const ctx = createServiceContext({ db, publisher, commandKey, logger, now: () => clock, options: OPTIONS });
      rollouts = createRolloutService({
        ctx,
        targets: { getTarget: async (name) => (name === TARGET.name ? TARGET : Promise.reject(new NotFoundError("target", name))) },
        updateCommandTtlMs: 600_000,
      });
      for (let i = 0; i < 6; i++) {
        const key = generateKeyPair();
        const id = deviceIdFromPublicKey(key.publicKey);
        fleet.push({ id, key });
        await db.insert(devices).values({ id, publicKey: toBase64Url(key.publicKey), model: i < 5 ? "S19" : "L7", enrollment: "accepted" });
      }
      fleet.sort((a, b) => a.id.localeCompare(b.id));
      for (let i = 0; i < 10; i++) {
        const key = generateKeyPair();
        const id = deviceIdFromPublicKey(key.publicKey);
        farm.push({ id, key });
        await db.insert(devices).values({ id, publicKey: toBase64Url(key.publicKey), model: "T21", enrollment: "accepted" });
      }
    });
    afterAll(async () => {
      await services.close();
      await close();
      dirs.cleanup();
    });

    const keyOf = (deviceId: string) => ([...fleet, ...farm].find((d) => d.id === deviceId) as { key: KeyPair }).key;
    const commandsFor = (rolloutId: string) => publisher.commands.filter((c) => c.params.rolloutId === rolloutId);

    async function ack(command: Command, status: "done" | "failed", reason?: string) {
      const body = { v: 1 as const, type: "ack" as const, deviceId: command.deviceId, seq: command.seq, action: command.action, status, containment: "none" as const, ts: clock, ...(reason ? { reason } : {}) };
      await services.deviceSide.onAck(signObject(body, keyOf(command.deviceId).privateKey));
    }

    // The detail the agent sends (agent/src/update): the command's seq and rollout id identify whose progress it is.
    async function progress(command: Command, phase: string, reason?: string, seq = command.seq) {
      const detail = { phase, targetName: command.params.targetName, rolloutId: command.params.rolloutId, seq, ...(reason ? { reason } : {}) };
      const body = { v: 1 as const, type: "event" as const, deviceId: command.deviceId, id: `evt-${String(++eventNo).padStart(6, "0")}`, ts: clock, kind: "update-progress" as const, severity: "info" as const, detail };
      await services.deviceSide.onEvent(signObject(body, keyOf(command.deviceId).privateKey));
    }

    it("plans groups by size and percent, with leftovers in a last group", () => {
      expect(planGroups(6, [{ size: 2 }, { percent: 50 }])).toEqual([2, 3, 1]);
      expect(planGroups(3, [{ size: 5 }, { size: 5 }])).toEqual([3]);
      expect(planGroups(10, [{ percent: 1 }])).toEqual([1, 9]);
    });

    it("validates input, naming the field, and refuses an unknown target or an empty selection", async () => {
      const base = { targetName: TARGET.name, selector: { model: "S19" }, groups: [{ size: 1 }], successThreshold: 100, errorThreshold: 50 };
      await expect(rollouts.create(operator, { ...base, selector: {} })).rejects.toMatchObject({ field: "selector" });
      await expect(rollouts.create(operator, { ...base, errorThreshold: 0 })).rejects.toBeInstanceOf(ValidationError);
      await expect(rollouts.create(operator, { ...base, groups: [{ size: 0 }] })).rejects.toMatchObject({ field: "groups.0.size" });
      await expect(rollouts.create(operator, { ...base, targetName: "nope" })).rejects.toBeInstanceOf(NotFoundError);
      await expect(rollouts.create(operator, { ...base, selector: { model: "S21" } })).rejects.toBeInstanceOf(ConflictError);
    });

    it("advances group by group on success and completes", async () => {
      const created = await rollouts.create(operator, {
        targetName: TARGET.name,
        selector: { model: "S19" },
        groups: [{ size: 2 }, { percent: 40 }],
        successThreshold: 100,
        errorThreshold: 50,
      });
      expect(created.state).toBe("running");
      expect(created.groupStatus.map((g) => g.size)).toEqual([2, 2, 1]);
      let sent = commandsFor(created.id);
      expect(sent).toHaveLength(2);
      for (const command of sent) {
        // Signed with the plane key, names the target and the rollout (the agent's verifyCommand accepts it).
        expect(() => verifyCommand(command, commandKey.publicKey, { deviceId: command.deviceId, lastSeq: 0, nowMs: clock })).not.toThrow();
        expect(command).toMatchObject({ action: "update", params: { targetName: TARGET.name, rolloutId: created.id } });
      }

      await progress(sent[0] as Command, "download");
      // Progress of another command (a manual update of the same target) does not count for this rollout.
      await progress(sent[0] as Command, "rejected", "a manual update of the same target", (sent[0] as Command).seq + 100);
      await rollouts.tick();
      let detail = await rollouts.get(created.id);
      expect(detail.devices.find((d) => d.deviceId === sent[0]?.deviceId)).toMatchObject({ status: "downloading", phase: "download" });
      expect(detail.currentGroup).toBe(0);

      for (const command of sent) await ack(command, "done");
      await rollouts.tick();
      detail = await rollouts.get(created.id);
      expect(detail.currentGroup).toBe(1);
      sent = commandsFor(created.id).slice(2);
      expect(sent).toHaveLength(2);

      for (const command of sent) await ack(command, "done");
      await rollouts.tick();
      sent = commandsFor(created.id).slice(4);
      expect(sent).toHaveLength(1);
      await ack(sent[0] as Command, "done");
      await rollouts.tick();
      detail = await rollouts.get(created.id);
      expect(detail.state).toBe("completed");
      expect(detail.groupStatus.every((g) => g.succeeded === g.size)).toBe(true);
    });

    it("stops by itself when a group's failures reach the error threshold", async () => {
      const created = await rollouts.create(operator, {
        targetName: TARGET.name,
        selector: { model: "S19" },
        groups: [{ size: 2 }],
        successThreshold: 100,
        errorThreshold: 50,
      });
      const sent = commandsFor(created.id);
      expect(sent).toHaveLength(2);
      await progress(sent[0] as Command, "rejected", "model S19 is not listed by the target");
      await rollouts.tick();
      const detail = await rollouts.get(created.id);
      expect(detail.state).toBe("stopped");
      expect(detail.reason).toMatch(/error threshold/);
      expect(detail.devices.find((d) => d.deviceId === sent[0]?.deviceId)).toMatchObject({ status: "failed", reason: "model S19 is not listed by the target" });
      expect(detail.devices.filter((d) => d.group === 1).every((d) => d.status === "cancelled")).toBe(true);
      // The other device's pending command stops being re-published.
      const pending = await services.service.listCommands(sent[1]?.deviceId as string, 10);
      expect(pending.find((c) => c.seq === sent[1]?.seq)?.status).toBe("superseded");
      // Nothing more is issued, and a stopped rollout cannot be resumed.
      await rollouts.tick();
      expect(commandsFor(created.id)).toHaveLength(2);
      await expect(rollouts.resume(operator, created.id)).rejects.toBeInstanceOf(ConflictError);
    });

    it("stops when devices of an earlier group fail after the rollout moved on (late failures count)", async () => {
      // 10 devices, groups [4, 6], success 50 %, error 50 %: two of group 0 commit, group 1 starts, then the other
      // two of group 0 roll back. Group 0 failed 50 %: the rollout stops, group 1's pending commands are superseded.
      const created = await rollouts.create(operator, {
        targetName: TARGET.name,
        selector: { model: "T21" },
        groups: [{ size: 4 }, { size: 6 }],
        successThreshold: 50,
        errorThreshold: 50,
      });
      const group0 = commandsFor(created.id);
      expect(group0).toHaveLength(4);
      await ack(group0[0] as Command, "done");
      await ack(group0[1] as Command, "done");
      await rollouts.tick();
      let detail = await rollouts.get(created.id);
      expect(detail).toMatchObject({ state: "running", currentGroup: 1 });
      const group1 = commandsFor(created.id).slice(4);
      expect(group1).toHaveLength(6);

      await progress(group0[2] as Command, "rolled-back", "rolled back: health check failed");
      await ack(group0[2] as Command, "failed", "rolled back: health check failed");
      await rollouts.tick();
      expect((await rollouts.get(created.id)).state).toBe("running"); // 1 of 4 is below 50 %
      await ack(group0[3] as Command, "failed", "rolled back: health check failed");
      await rollouts.tick();
      detail = await rollouts.get(created.id);
      expect(detail.state).toBe("stopped");
      expect(detail.reason).toMatch(/error threshold reached: 2 of 4 devices failed in group 0 \(after the rollout moved on to group 1\)/);
      // The halt is an operator event (stream and webhooks), written with it.
      const halted = (await db.select().from(planeEvents).where(eq(planeEvents.kind, "rollout.halted"))).filter((e) => (e.data as { rolloutId: string }).rolloutId === created.id);
      expect(halted.map((e) => e.data)).toEqual([expect.objectContaining({ rolloutId: created.id, group: 0 })]);
      expect(detail.groupStatus[0]).toMatchObject({ succeeded: 2, failed: 2 });
      // Group 1's unacknowledged commands are no longer re-published.
      for (const command of group1) {
        const listed = await services.service.listCommands(command.deviceId, 10);
        expect(listed.find((c) => c.seq === command.seq)?.status).toBe("superseded");
      }
      await rollouts.tick();
      expect(commandsFor(created.id)).toHaveLength(10);
    });

    it("stops on late failures in an earlier group after several groups passed, and never completes before they finish", async () => {
      // Groups [2, 2, 2, 4] with success 50 %, error 50 %: one device of group 0 commits and the rollout moves on;
      // groups 1 and 2 pass the same way; group 0's second device fails while group 3 runs: stopped.
      const created = await rollouts.create(operator, {
        targetName: TARGET.name,
        selector: { model: "T21" },
        groups: [{ size: 2 }, { size: 2 }, { size: 2 }],
        successThreshold: 50,
        errorThreshold: 50,
      });
      expect(created.groupStatus.map((g) => g.size)).toEqual([2, 2, 2, 4]);
      for (let group = 0; group < 3; group++) {
        const sent = commandsFor(created.id).slice(group * 2, group * 2 + 2);
        expect(sent).toHaveLength(2);
        await ack(sent[0] as Command, "done");
        await rollouts.tick();
        expect((await rollouts.get(created.id)).currentGroup).toBe(group + 1);
      }
      const last = commandsFor(created.id).slice(6);
      expect(last).toHaveLength(4);
      // The last group all succeed, but group 0..2 still have a device in progress: not completed yet.
      for (const command of last) await ack(command, "done");
      await rollouts.tick();
      expect((await rollouts.get(created.id)).state).toBe("running");
      await ack(commandsFor(created.id)[3] as Command, "done"); // group 1's second device
      await progress(commandsFor(created.id)[1] as Command, "rejected", "model T21 is not listed by the target"); // group 0's second
      await rollouts.tick();
      const detail = await rollouts.get(created.id);
      expect(detail.state).toBe("stopped");
      expect(detail.reason).toMatch(/1 of 2 devices failed in group 0 \(after the rollout moved on to group 3\)/);
    });

    it("counts a failed ack and an expired command as failures", async () => {
      const created = await rollouts.create(operator, {
        targetName: TARGET.name,
        selector: { deviceIds: fleet.slice(0, 2).map((d) => d.id) },
        groups: [{ size: 2 }],
        successThreshold: 50,
        errorThreshold: 100,
      });
      const [first, second] = commandsFor(created.id) as [Command, Command];
      await ack(first, "failed", "health check failed; rolled back");
      clock += 600_001;
      await services.deviceSide.retryPendingCommands(); // expires the second device's command
      await rollouts.tick();
      const detail = await rollouts.get(created.id);
      expect(detail.devices.map((d) => d.status)).toEqual(["failed", "failed"]);
      expect(detail.state).toBe("stopped");
      expect(second.deviceId).not.toBe(first.deviceId);
    });

    it("pauses, resumes and cancels; illegal transitions are refused", async () => {
      const created = await rollouts.create(operator, {
        targetName: TARGET.name,
        selector: { model: "S19" },
        groups: [{ size: 1 }, { size: 1 }],
        successThreshold: 100,
        errorThreshold: 100,
        start: false,
      });
      expect(created.state).toBe("created");
      expect(commandsFor(created.id)).toHaveLength(0);
      await expect(rollouts.pause(operator, created.id)).rejects.toBeInstanceOf(ConflictError);
      expect((await rollouts.start(operator, created.id)).state).toBe("running");
      expect(commandsFor(created.id)).toHaveLength(1);
      expect((await rollouts.pause(operator, created.id)).state).toBe("paused");
      await ack(commandsFor(created.id)[0] as Command, "done");
      await rollouts.tick(); // paused: nothing advances
      expect((await rollouts.get(created.id)).currentGroup).toBe(0);
      const resumed = await rollouts.resume(operator, created.id);
      expect(resumed).toMatchObject({ state: "running", currentGroup: 1 });
      expect(commandsFor(created.id)).toHaveLength(2);
      const cancelled = await rollouts.cancel(operator, created.id, "bad batch");
      expect(cancelled).toMatchObject({ state: "cancelled", reason: "bad batch" });
      expect(cancelled.devices.filter((d) => d.group === 2).every((d) => d.status === "cancelled")).toBe(true);
      await expect(rollouts.cancel(operator, created.id)).rejects.toBeInstanceOf(ConflictError);
      expect((await rollouts.list(10)).map((r) => r.id)).toContain(created.id);
      await expect(rollouts.get("ro_missing")).rejects.toBeInstanceOf(NotFoundError);
    });

    it("sends one update command to one device outside a rollout", async () => {
      const device = fleet[5] as { id: string };
      const command = await rollouts.updateDevice(operator, device.id, TARGET.name);
      expect(command).toMatchObject({ deviceId: device.id, action: "update", params: { targetName: TARGET.name }, status: "pending" });
      await expect(rollouts.updateDevice(operator, "hw-000000000000000000000000", TARGET.name)).rejects.toBeInstanceOf(NotFoundError);
    });
  });
}

onEveryDatabase("rollout engine", contract);

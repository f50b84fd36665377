/**
 * Rollouts (hawkBit's model): a release target to a device selector, in groups; a group's success threshold
 * advances to the next group, its error threshold stops the whole rollout; pause, resume, cancel (emergency stop).
 *
 * The engine keeps all state in the database and is driven by `tick()` on a timer, so a plane restart resumes
 * where it was; each rollout is processed in its own transaction with its row locked (SKIP LOCKED), so replicas
 * share the work. Devices are told through signed `update` commands (service/commands: per-device seq, expiry,
 * re-published until acked); progress comes from the devices' signed `update-progress` events and the ack.
 */
import { and, asc, desc, eq, gte, inArray, lte, type SQL } from "drizzle-orm";
import { ValidationError } from "../../../shared/errors/index.js";
import type { Command } from "../../../shared/protocol/index.js";
import { updateProgressDetailSchema, type UpdateParams, type UpdateProgressPhase } from "../../../shared/protocol/update.js";
import { recordPlaneEvents } from "../events/record.js";
import { commands, deviceEvents, devices, rolloutDevices, rollouts, type Database } from "../db/index.js";
import { ConflictError, NotFoundError } from "../errors.js";
import { type Actor, issueCommands, lockDevices, newId, publishCommands, recordAudit, type ServiceContext, type Tx } from "../service/index.js";
import type { TargetView } from "../tuf/index.js";
import {
  FINISHED,
  IN_PROGRESS,
  PHASE_STATUS,
  rolloutTransition,
  type RolloutDeviceStatus,
  type RolloutEvent,
  type RolloutState,
} from "./machine.js";
import type { CreateRolloutInput, GroupSpec, RolloutDetail, RolloutDeviceView, RolloutSelector, RolloutService, RolloutView } from "./types.js";

export * from "./machine.js";
export type * from "./types.js";

export const MAX_ROLLOUT_DEVICES = 100_000;
const MAX_GROUPS = 100;

type RolloutRow = typeof rollouts.$inferSelect;
type DeviceStatusRow = typeof rolloutDevices.$inferSelect;

export interface RolloutDeps {
  /** The service context (db, command key, publisher, clock) the signed command path needs. */
  ctx: ServiceContext;
  /** Published targets (the TUF repository): a rollout may only name one. */
  targets: { getTarget(name: string): Promise<TargetView> };
  /** Expiry of each update command (an install may take long; the ack still counts after expiry). */
  updateCommandTtlMs: number;
}

/** Splits `count` devices into group sizes; leftovers after the listed groups form one more group. */
export function planGroups(count: number, specs: GroupSpec[]): number[] {
  const sizes: number[] = [];
  let remaining = count;
  for (const spec of specs) {
    if (remaining === 0) break;
    const wanted = "size" in spec ? spec.size : Math.max(1, Math.round((spec.percent * count) / 100));
    const size = Math.min(remaining, wanted);
    sizes.push(size);
    remaining -= size;
  }
  if (remaining > 0) sizes.push(remaining);
  return sizes;
}

function validateInput(input: CreateRolloutInput): void {
  const { selector, groups, successThreshold, errorThreshold } = input;
  const criteria = [selector.model, selector.deviceIds, selector.appraisal, selector.containment].filter((c) => c !== undefined);
  // A fleet-wide rollout must be asked for explicitly (e.g. by model), never by an empty selector.
  if (criteria.length === 0) throw new ValidationError("selector needs at least one of model, deviceIds, appraisal, containment", "selector");
  if (groups.length === 0 || groups.length > MAX_GROUPS) throw new ValidationError(`groups must list 1 to ${MAX_GROUPS} groups`, "groups");
  groups.forEach((group, i) => {
    if ("size" in group && (!Number.isInteger(group.size) || group.size < 1)) throw new ValidationError("size must be a positive integer", `groups.${i}.size`);
    if ("percent" in group && !(group.percent > 0 && group.percent <= 100)) throw new ValidationError("percent must be in (0, 100]", `groups.${i}.percent`);
  });
  for (const [name, value] of [["successThreshold", successThreshold], ["errorThreshold", errorThreshold]] as const) {
    if (!Number.isInteger(value) || value < 1 || value > 100) throw new ValidationError(`${name} must be a whole percent from 1 to 100`, name);
  }
}

export function createRolloutService(deps: RolloutDeps): RolloutService {
  const { ctx } = deps;
  const db: Database = ctx.db;

  function view(row: RolloutRow, statuses: DeviceStatusRow[]): RolloutView {
    const groupCount = statuses.reduce((max, s) => Math.max(max, s.groupIndex + 1), 0);
    const groupStatus = Array.from({ length: groupCount }, (_, index) => {
      const members = statuses.filter((s) => s.groupIndex === index);
      const count = (pred: (status: RolloutDeviceStatus) => boolean) => members.filter((m) => pred(m.status as RolloutDeviceStatus)).length;
      return {
        index,
        size: members.length,
        waiting: count((s) => s === "waiting"),
        inProgress: count((s) => IN_PROGRESS.includes(s)),
        succeeded: count((s) => s === "succeeded"),
        failed: count((s) => s === "failed"),
        cancelled: count((s) => s === "cancelled"),
      };
    });
    return {
      id: row.id,
      targetName: row.targetName,
      version: row.version,
      selector: row.selector as RolloutSelector,
      groups: row.groups as GroupSpec[],
      successThreshold: row.successThreshold,
      errorThreshold: row.errorThreshold,
      state: row.state as RolloutState,
      currentGroup: row.currentGroup,
      reason: row.reason,
      createdBy: row.createdBy as Actor,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
      total: statuses.length,
      groupStatus,
    };
  }

  function deviceView(s: DeviceStatusRow): RolloutDeviceView {
    return {
      deviceId: s.deviceId,
      group: s.groupIndex,
      status: s.status as RolloutDeviceStatus,
      // Written only from a parsed update-progress detail (track()), so one of UPDATE_PROGRESS_PHASES.
      phase: s.phase as UpdateProgressPhase | null,
      commandSeq: s.commandSeq,
      reason: s.reason,
      updatedAt: s.updatedAt.toISOString(),
    };
  }

  async function detail(tx: Tx, id: string): Promise<RolloutDetail> {
    const [row] = await tx.select().from(rollouts).where(eq(rollouts.id, id));
    if (!row) throw new NotFoundError("rollout", id);
    const statuses = await tx.select().from(rolloutDevices).where(eq(rolloutDevices.rolloutId, id)).orderBy(asc(rolloutDevices.groupIndex), asc(rolloutDevices.deviceId));
    return { ...view(row, statuses), devices: statuses.map(deviceView) };
  }

  async function lockRollout(tx: Tx, id: string): Promise<RolloutRow> {
    const [row] = await tx.select().from(rollouts).where(eq(rollouts.id, id)).for("update");
    if (!row) throw new NotFoundError("rollout", id);
    return row;
  }

  async function move(tx: Tx, row: RolloutRow, event: RolloutEvent, actor: Actor, reason: string | null, at: Date): Promise<RolloutState> {
    const to = rolloutTransition(row.state as RolloutState, event);
    await tx.update(rollouts).set({ state: to, reason: reason ?? row.reason, updatedAt: at }).where(eq(rollouts.id, row.id));
    await recordAudit(tx, [{ actor, action: `rollout.${to}`, target: row.id, detail: { from: row.state, event, reason } }], at);
    row.state = to;
    return to;
  }

  /** Stop issuing: unsent devices are cancelled, pending (unacked) update commands stop being re-published. */
  async function haltIssuing(tx: Tx, row: RolloutRow, why: string, at: Date): Promise<void> {
    await tx
      .update(rolloutDevices)
      .set({ status: "cancelled", reason: why, updatedAt: at })
      .where(and(eq(rolloutDevices.rolloutId, row.id), eq(rolloutDevices.status, "waiting")));
    const issued = await tx
      .select({ deviceId: rolloutDevices.deviceId, seq: rolloutDevices.commandSeq })
      .from(rolloutDevices)
      .where(and(eq(rolloutDevices.rolloutId, row.id), inArray(rolloutDevices.status, [...IN_PROGRESS])));
    for (const { deviceId, seq } of issued) {
      if (seq === null) continue;
      await tx
        .update(commands)
        .set({ status: "superseded", reason: `rollout ${row.id} ${row.state}: ${why}` })
        .where(and(eq(commands.deviceId, deviceId), eq(commands.seq, seq), eq(commands.status, "pending")));
    }
  }

  /** Issues signed update commands to the waiting devices of `group` (locked, accepted ones only). */
  async function issueGroup(tx: Tx, row: RolloutRow, group: number, now: number): Promise<Command[]> {
    const at = new Date(now);
    const waiting = await tx
      .select({ deviceId: rolloutDevices.deviceId })
      .from(rolloutDevices)
      .where(and(eq(rolloutDevices.rolloutId, row.id), eq(rolloutDevices.groupIndex, group), eq(rolloutDevices.status, "waiting")));
    if (waiting.length === 0) return [];
    const locked = await lockDevices(tx, waiting.map((w) => w.deviceId));
    const accepted = locked.filter((d) => d.enrollment === "accepted");
    const gone = waiting.map((w) => w.deviceId).filter((id) => !accepted.some((d) => d.id === id));
    if (gone.length > 0) {
      await tx
        .update(rolloutDevices)
        .set({ status: "failed", reason: "device is no longer accepted", updatedAt: at })
        .where(and(eq(rolloutDevices.rolloutId, row.id), inArray(rolloutDevices.deviceId, gone)));
    }
    const actor: Actor = { kind: "system", id: `rollout:${row.id}` };
    const { views, toPublish } = await issueCommands(
      ctx,
      tx,
      accepted,
      { action: "update", params: { targetName: row.targetName, rolloutId: row.id } satisfies UpdateParams, actor, ttlMs: deps.updateCommandTtlMs, supersede: true },
      now,
    );
    for (const command of views) {
      await tx
        .update(rolloutDevices)
        .set({ status: "issued", commandSeq: command.seq, phase: null, updatedAt: at })
        .where(and(eq(rolloutDevices.rolloutId, row.id), eq(rolloutDevices.deviceId, command.deviceId)));
    }
    return toPublish;
  }

  /** Folds acks, expiries and update-progress events into the device statuses of the rollout's issued devices. */
  async function track(tx: Tx, row: RolloutRow, now: number): Promise<void> {
    const at = new Date(now);
    const active = await tx
      .select()
      .from(rolloutDevices)
      .where(and(eq(rolloutDevices.rolloutId, row.id), inArray(rolloutDevices.status, [...IN_PROGRESS])));
    if (active.length === 0) return;
    const ids = active.map((a) => a.deviceId);
    const commandRows = await tx
      .select({ deviceId: commands.deviceId, seq: commands.seq, status: commands.status, ack: commands.ack })
      .from(commands)
      .where(and(inArray(commands.deviceId, ids), eq(commands.action, "update")));
    const events = await tx
      .select({ deviceId: deviceEvents.deviceId, detail: deviceEvents.detail, receivedAt: deviceEvents.receivedAt })
      .from(deviceEvents)
      .where(and(inArray(deviceEvents.deviceId, ids), eq(deviceEvents.kind, "update-progress"), gte(deviceEvents.receivedAt, row.createdAt)))
      .orderBy(asc(deviceEvents.receivedAt), asc(deviceEvents.ts));
    for (const device of active) {
      const command = commandRows.find((c) => c.deviceId === device.deviceId && c.seq === device.commandSeq);
      const progress = events.filter((e) => {
        const d = e.detail as { targetName?: unknown; rolloutId?: unknown; seq?: unknown };
        if (e.deviceId !== device.deviceId || d.targetName !== row.targetName) return false;
        // Progress of this rollout's own command only, not of a manual update of the same target.
        return typeof d.seq === "number" ? d.seq === device.commandSeq : d.rolloutId === row.id;
      });
      // The wire contract of the detail (shared/protocol/update.ts); a detail it does not describe is no progress.
      const parsedLast = updateProgressDetailSchema.safeParse(progress.at(-1)?.detail);
      const last = parsedLast.success ? parsedLast.data : undefined;
      let status: RolloutDeviceStatus = device.status as RolloutDeviceStatus;
      let reason: string | null = device.reason;
      let phase: string | null = last?.phase ?? device.phase;
      const ack = command?.ack as { status?: string; reason?: string } | null | undefined;
      if (ack) {
        // The signed ack is the device's final word on the command (done = installed, health-checked, committed).
        status = ack.status === "done" ? "succeeded" : "failed";
        reason = ack.status === "done" ? null : (ack.reason ?? last?.reason ?? "device reported failure");
      } else if (last) {
        status = PHASE_STATUS[last.phase];
        if (status === "failed") reason = last.reason ?? last.phase;
      } else if (!command || command.status === "expired" || command.status === "superseded") {
        status = "failed";
        reason = command ? `update command ${command.status} before the device acknowledged it` : "update command is gone";
        phase = phase ?? null;
      }
      if (status !== device.status || phase !== device.phase || reason !== device.reason) {
        await tx
          .update(rolloutDevices)
          .set({ status, phase, reason, updatedAt: at })
          .where(and(eq(rolloutDevices.rolloutId, row.id), eq(rolloutDevices.deviceId, device.deviceId)));
      }
    }
  }

  /**
   * One engine step for one running rollout: track, then stop / advance / finish. Returns commands to publish.
   *
   * HW-RO-1: the error threshold is checked for EVERY group the rollout has reached (0..currentGroup), not only the
   * current one: a device of an earlier group may fail after its group passed the success threshold (a health
   * check that rolls back minutes after the first devices committed), and that group then failed all the same.
   */
  async function step(tx: Tx, row: RolloutRow, now: number): Promise<Command[]> {
    const at = new Date(now);
    await track(tx, row, now);
    const engine: Actor = { kind: "system", id: "rollout-engine" };
    const reached = await tx
      .select({ status: rolloutDevices.status, groupIndex: rolloutDevices.groupIndex })
      .from(rolloutDevices)
      .where(and(eq(rolloutDevices.rolloutId, row.id), lte(rolloutDevices.groupIndex, row.currentGroup)));
    // HW-RO-1: every reached group, in order; the first one at its error threshold stops the rollout.
    for (let group = 0; group <= row.currentGroup; group++) {
      const groupMembers = reached.filter((m) => m.groupIndex === group);
      const groupSize = groupMembers.length;
      const groupFailed = groupMembers.filter((m) => m.status === "failed").length;
      if (groupSize > 0 && groupFailed * 100 >= row.errorThreshold * groupSize) {
        const late = group < row.currentGroup ? ` (after the rollout moved on to group ${row.currentGroup})` : "";
        const why = `error threshold reached: ${groupFailed} of ${groupSize} devices failed in group ${group}${late} (threshold ${row.errorThreshold}%)`;
        await move(tx, row, "error-threshold", engine, why, at);
        await haltIssuing(tx, row, why, at);
        await recordPlaneEvents(tx, [{ kind: "rollout.halted", deviceId: null, data: { rolloutId: row.id, targetName: row.targetName, group, reason: why } }], at);
        ctx.logger.warn({ rolloutId: row.id, group, currentGroup: row.currentGroup, failed: groupFailed, size: groupSize }, "rollout stopped at its error threshold");
        return [];
      }
    }
    const members = reached.filter((m) => m.groupIndex === row.currentGroup);
    const size = members.length;
    const succeeded = members.filter((m) => m.status === "succeeded").length;
    // A rollout completes only when no device of ANY group is still in progress: a late failure in an earlier
    // group must still be able to stop it (HW-RO-1).
    const unfinished = reached.filter((m) => !FINISHED.includes(m.status as RolloutDeviceStatus)).length;
    if (size === 0 || succeeded * 100 >= row.successThreshold * size) {
      const [next] = await tx
        .select({ groupIndex: rolloutDevices.groupIndex })
        .from(rolloutDevices)
        .where(and(eq(rolloutDevices.rolloutId, row.id), gte(rolloutDevices.groupIndex, row.currentGroup + 1)))
        .orderBy(asc(rolloutDevices.groupIndex))
        .limit(1);
      if (next) {
        await tx.update(rollouts).set({ currentGroup: next.groupIndex, updatedAt: at }).where(eq(rollouts.id, row.id));
        await recordAudit(tx, [{ actor: engine, action: "rollout.advance", target: row.id, detail: { from: row.currentGroup, to: next.groupIndex, succeeded, size } }], at);
        row.currentGroup = next.groupIndex;
        return issueGroup(tx, row, next.groupIndex, now);
      }
      if (unfinished === 0) {
        await move(tx, row, "finish", engine, `${succeeded} of ${size} devices in the last group succeeded`, at);
        return [];
      }
    }
    // Devices added to the group later (none today) or left waiting after a pause get their command now.
    return issueGroup(tx, row, row.currentGroup, now);
  }

  async function selectDevices(tx: Tx, selector: RolloutSelector): Promise<string[]> {
    const conditions: SQL[] = [eq(devices.enrollment, "accepted")];
    if (selector.model !== undefined) conditions.push(eq(devices.model, selector.model));
    if (selector.deviceIds !== undefined) conditions.push(inArray(devices.id, selector.deviceIds.length > 0 ? selector.deviceIds : [""]));
    if (selector.appraisal !== undefined) conditions.push(inArray(devices.appraisal, selector.appraisal));
    if (selector.containment !== undefined) conditions.push(inArray(devices.containment, selector.containment));
    const rows = await tx
      .select({ id: devices.id })
      .from(devices)
      .where(and(...conditions))
      .orderBy(asc(devices.id))
      .limit(MAX_ROLLOUT_DEVICES + 1);
    if (rows.length > MAX_ROLLOUT_DEVICES) throw new ValidationError(`selector matches more than ${MAX_ROLLOUT_DEVICES} devices`, "selector");
    return rows.map((r) => r.id);
  }

  /** Runs a state change on one rollout in a transaction, then publishes what it issued. */
  async function change(id: string, body: (tx: Tx, row: RolloutRow, now: number) => Promise<Command[]>): Promise<RolloutDetail> {
    const now = ctx.now();
    const { result, toPublish } = await db.transaction(async (tx) => {
      const row = await lockRollout(tx, id);
      const toPublish = await body(tx, row, now);
      return { result: await detail(tx, id), toPublish };
    });
    await publishCommands(ctx, toPublish);
    return result;
  }

  return {
    async create(actor, input) {
      validateInput(input);
      const target = await deps.targets.getTarget(input.targetName);
      const now = ctx.now();
      const at = new Date(now);
      const id = newId("ro");
      const { toPublish } = await db.transaction(async (tx) => {
        const ids = await selectDevices(tx, input.selector);
        if (ids.length === 0) throw new ConflictError("the selector matches no accepted device");
        const sizes = planGroups(ids.length, input.groups);
        const row: RolloutRow = {
          id,
          targetName: target.name,
          version: target.version,
          selector: input.selector,
          groups: input.groups,
          successThreshold: input.successThreshold,
          errorThreshold: input.errorThreshold,
          state: "created",
          currentGroup: 0,
          reason: null,
          createdBy: actor,
          createdAt: at,
          updatedAt: at,
        };
        await tx.insert(rollouts).values(row);
        let offset = 0;
        const members = sizes.flatMap((size, groupIndex) => {
          const part = ids.slice(offset, offset + size).map((deviceId) => ({ rolloutId: id, deviceId, groupIndex, status: "waiting", updatedAt: at }));
          offset += size;
          return part;
        });
        for (let i = 0; i < members.length; i += 1000) await tx.insert(rolloutDevices).values(members.slice(i, i + 1000));
        await recordAudit(tx, [{ actor, action: "rollout.create", target: id, detail: { targetName: target.name, version: target.version, devices: ids.length, groups: sizes } }], at);
        if (input.start === false) return { toPublish: [] as Command[] };
        await move(tx, row, "start", actor, null, at);
        return { toPublish: await issueGroup(tx, row, 0, now) };
      });
      await publishCommands(ctx, toPublish);
      return detail(db, id);
    },

    async list(limit) {
      const rows = await db.select().from(rollouts).orderBy(desc(rollouts.createdAt), desc(rollouts.id)).limit(Math.max(1, Math.min(1000, limit)));
      if (rows.length === 0) return [];
      const statuses = await db.select().from(rolloutDevices).where(inArray(rolloutDevices.rolloutId, rows.map((r) => r.id)));
      return rows.map((row) => view(row, statuses.filter((s) => s.rolloutId === row.id)));
    },

    get: (id) => detail(db, id),

    start: (actor, id) =>
      change(id, async (tx, row, now) => {
        await move(tx, row, "start", actor, null, new Date(now));
        return issueGroup(tx, row, row.currentGroup, now);
      }),

    pause: (actor, id, reason) =>
      change(id, async (tx, row, now) => {
        await move(tx, row, "pause", actor, reason ?? "paused by operator", new Date(now));
        return [];
      }),

    resume: (actor, id) =>
      change(id, async (tx, row, now) => {
        await move(tx, row, "resume", actor, null, new Date(now));
        return step(tx, row, now);
      }),

    cancel: (actor, id, reason) =>
      change(id, async (tx, row, now) => {
        const why = reason ?? "cancelled by operator";
        await move(tx, row, "cancel", actor, why, new Date(now));
        await haltIssuing(tx, row, why, new Date(now));
        return [];
      }),

    async updateDevice(actor, deviceId, targetName) {
      const target = await deps.targets.getTarget(targetName);
      const now = ctx.now();
      const { view: command, toPublish } = await db.transaction(async (tx) => {
        const [device] = await lockDevices(tx, [deviceId]);
        if (!device) throw new NotFoundError("device", deviceId);
        if (device.enrollment !== "accepted") throw new ConflictError(`device ${deviceId} is ${device.enrollment}, not accepted`);
        const { views, toPublish } = await issueCommands(
          ctx,
          tx,
          [device],
          { action: "update", params: { targetName: target.name } satisfies UpdateParams, actor, ttlMs: deps.updateCommandTtlMs, supersede: true },
          now,
        );
        return { view: views[0] as NonNullable<(typeof views)[0]>, toPublish };
      });
      await publishCommands(ctx, toPublish);
      return command;
    },

    async tick() {
      const running = await db.select({ id: rollouts.id }).from(rollouts).where(eq(rollouts.state, "running")).orderBy(asc(rollouts.createdAt));
      for (const { id } of running) {
        const now = ctx.now();
        const toPublish = await db.transaction(async (tx) => {
          // SKIP LOCKED: another replica (or an operator call) holds this rollout; it is handled there.
          const [row] = await tx.select().from(rollouts).where(and(eq(rollouts.id, id), eq(rollouts.state, "running"))).for("update", { skipLocked: true });
          if (!row) return [];
          return step(tx, row, now);
        });
        await publishCommands(ctx, toPublish);
      }
    },
  };
}

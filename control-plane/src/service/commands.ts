/**
 * Signed plane -> device commands: issue (with the device's next seq), supersede, re-publish, expire.
 * Rule HW-CMD-1 (device side) relies on what is enforced here: seq strictly increasing per device, an expiry,
 * and a signature by the plane's command key over the canonical command.
 */
import { and, asc, eq, gt, inArray, isNull, lte, or, sql } from "drizzle-orm";
import { signObject } from "../../../shared/crypto/index.js";
import { PROTOCOL_VERSION, type Command, type CommandAction } from "../../../shared/protocol/index.js";
import { commands, devices } from "../db/index.js";
import { canTransition, transition, type ContainmentEvent } from "../trust/index.js";
import { chunks, type DeviceRow, iso, lockDevice, recordAudit, recordTransitions, type ServiceContext, type TransitionRecord, type Tx } from "./context.js";
import type { Actor, CommandView, ContainmentState } from "./types.js";

export type CommandRow = typeof commands.$inferSelect;
export type ContainmentAction = Extract<CommandAction, "quarantine" | "release">;

export function toCommandView(row: CommandRow): CommandView {
  return {
    deviceId: row.deviceId,
    seq: row.seq,
    action: row.action,
    params: row.params as Record<string, unknown>,
    status: row.status as CommandView["status"],
    issuedAt: row.issuedAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    ackedAt: iso(row.ackedAt),
    reason: row.reason,
  };
}

const REQUEST_EVENT: Record<ContainmentAction, ContainmentEvent> = {
  quarantine: "quarantine-requested",
  release: "release-requested",
};
/** Containment states in which a request is already in force: asking again changes nothing. */
const ALREADY: Record<ContainmentAction, readonly ContainmentState[]> = {
  quarantine: ["quarantine_requested", "quarantined"],
  release: ["release_requested", "none"],
};
/** The requested-state a pending command of each action stands for (used on expiry and failure). */
export const REQUESTED_STATE: Record<ContainmentAction, ContainmentState> = {
  quarantine: "quarantine_requested",
  release: "release_requested",
};

export interface IssueResult {
  /** One per device, in the order given: the new command, or for a no-op the latest of that action (if any). */
  views: CommandView[];
  /** Commands to publish once the transaction has committed. */
  toPublish: Command[];
}

/** A command signed by the plane with the device's next seq (HW-CMD-1), and the row that stores it. */
function signedCommand(
  ctx: ServiceContext,
  row: DeviceRow,
  action: CommandAction,
  params: Record<string, unknown>,
  actor: Actor,
  now: number,
  expiresAt: number,
): { command: CommandRow; payload: Command } {
  const payload = signObject(
    { v: PROTOCOL_VERSION, type: "command" as const, deviceId: row.id, seq: row.nextCommandSeq, issuedAt: now, expiresAt, action, params },
    ctx.commandKey.privateKey,
    ctx.signWithCommandKey,
  );
  const command: CommandRow = {
    deviceId: row.id,
    seq: row.nextCommandSeq,
    action,
    params: payload.params,
    payload,
    status: "pending",
    issuedAt: new Date(now),
    expiresAt: new Date(expiresAt),
    ackedAt: null,
    reason: null,
    ack: null,
    issuedBy: actor,
    // Not stamped at issue: the first retry tick re-publishes it, as a single plane always has (HW-TRUST-3).
    publishedAt: null,
  };
  return { command, payload };
}

/**
 * HW-Q-1 on the plane's side: a device that says (hello) it is not contained while the plane holds it
 * `quarantined` lost its state; only a signed release lifts a quarantine, so a fresh quarantine command is issued
 * (containment `quarantined --containment-lost--> quarantine_requested`). `row` must be locked by the caller.
 */
export async function reassertQuarantine(ctx: ServiceContext, tx: Tx, row: DeviceRow, actor: Actor, reason: string, now: number): Promise<Command> {
  const at = new Date(now);
  const to = transition("containment", row.containment as ContainmentState, "containment-lost");
  const { command, payload } = signedCommand(ctx, row, "quarantine", { reason }, actor, now, now + ctx.options.commandTtlMs);
  await tx
    .update(commands)
    .set({ status: "superseded", reason: "superseded by quarantine" })
    .where(and(eq(commands.deviceId, row.id), eq(commands.status, "pending"), inArray(commands.action, ["quarantine", "release"])));
  await tx.update(devices).set({ containment: to, nextCommandSeq: sql`${devices.nextCommandSeq} + 1`, updatedAt: at }).where(eq(devices.id, row.id));
  await tx.insert(commands).values(command);
  await recordTransitions(tx, [{ deviceId: row.id, machine: "containment", from: row.containment, to, reason, actor, evidence: { command: payload } }], at);
  return payload;
}

/**
 * Issues quarantine/release commands to already-locked, accepted devices inside `tx`: batched inserts, one
 * supersede statement, one device update. A device already in (or heading to) the asked state is left alone.
 */
export async function issueContainment(
  ctx: ServiceContext,
  tx: Tx,
  rows: DeviceRow[],
  action: ContainmentAction,
  actor: Actor,
  reason: string,
  now: number,
): Promise<IssueResult> {
  const at = new Date(now);
  const expiresAt = now + ctx.options.commandTtlMs;
  const noop = rows.filter((row) => ALREADY[action].includes(row.containment as ContainmentState));
  const act = rows.filter((row) => !ALREADY[action].includes(row.containment as ContainmentState));

  const issued: CommandRow[] = [];
  const toPublish: Command[] = [];
  const records: TransitionRecord[] = [];
  for (const row of act) {
    const to = transition("containment", row.containment as ContainmentState, REQUEST_EVENT[action]);
    const { command, payload } = signedCommand(ctx, row, action, { reason }, actor, now, expiresAt);
    issued.push(command);
    toPublish.push(payload);
    records.push({ deviceId: row.id, machine: "containment", from: row.containment, to, reason, actor, evidence: { command: payload } });
  }

  for (const ids of chunks(act.map((row) => row.id), 5000)) {
    // A release supersedes pending quarantine commands and vice versa (only one containment request is live).
    await tx
      .update(commands)
      .set({ status: "superseded", reason: `superseded by ${action}` })
      .where(and(inArray(commands.deviceId, ids), eq(commands.status, "pending"), inArray(commands.action, ["quarantine", "release"])));
    await tx
      .update(devices)
      .set({ containment: REQUESTED_STATE[action], nextCommandSeq: sql`${devices.nextCommandSeq} + 1`, updatedAt: at })
      .where(inArray(devices.id, ids));
  }
  for (const part of chunks(issued)) await tx.insert(commands).values(part);
  await recordTransitions(tx, records, at);
  if (noop.length > 0) {
    await recordAudit(
      tx,
      noop.map((row) => ({ actor, action: `${action}.noop`, target: row.id, detail: { containment: row.containment, reason } })),
      at,
    );
  }

  const latest = new Map<string, CommandRow>();
  for (const ids of chunks(noop.map((row) => row.id), 5000)) {
    const existing = await tx
      .select()
      .from(commands)
      .where(and(inArray(commands.deviceId, ids), eq(commands.action, action)))
      .orderBy(asc(commands.seq));
    for (const command of existing) latest.set(command.deviceId, command);
  }
  for (const command of issued) latest.set(command.deviceId, command);
  const views = rows.flatMap((row) => {
    const command = latest.get(row.id);
    return command ? [toCommandView(command)] : [];
  });
  return { views, toPublish };
}

/** Publishes after commit; a failure is logged and left to the retry timer (the command stays pending). */
export async function publishCommands(ctx: ServiceContext, toPublish: Command[]): Promise<void> {
  // In seq order per device (the agent refuses a seq below one it executed), devices side by side: a fleet-wide
  // quarantine must not wait for 1,000 publishes one after another.
  const byDevice = new Map<string, Command[]>();
  for (const command of toPublish) {
    const list = byDevice.get(command.deviceId);
    if (list) list.push(command);
    else byDevice.set(command.deviceId, [command]);
  }
  await Promise.all(
    [...byDevice].map(async ([deviceId, list]) => {
      for (const command of list) {
        if (!ctx.publisher.isConnected(deviceId)) return;
        try {
          await ctx.publisher.publish(deviceId, "command", command);
        } catch (error) {
          ctx.logger.warn({ err: error, deviceId, seq: command.seq }, "command publish failed; will retry");
        }
      }
    }),
  );
}

const DEFAULT_COMMAND_RETRY_MS = 5_000;

/**
 * HW-HA-4: claims `candidates` (pending commands this replica is about to re-publish) with one UPDATE ...
 * RETURNING per chunk: only commands still pending, unexpired, and not handed to the broker within 0.9 of the
 * retry interval by any replica get `published_at = now` and come back (in seq order per device). Replicas ticking
 * at the same moment get disjoint sets, so a retry never sends one command twice in one retry period.
 */
export async function claimForRepublish(ctx: ServiceContext, candidates: readonly Command[], now: number): Promise<Command[]> {
  if (candidates.length === 0) return [];
  const at = new Date(now);
  const cutoff = new Date(now - Math.floor(0.9 * (ctx.options.commandRetryMs ?? DEFAULT_COMMAND_RETRY_MS)));
  const claimed: Command[] = [];
  for (const part of chunks([...candidates], 5000)) {
    const keys = sql.join(
      part.map((command) => sql`(${command.deviceId}::text, ${command.seq}::integer)`),
      sql`, `,
    );
    const rows = await ctx.db
      .update(commands)
      .set({ publishedAt: at })
      .where(
        and(
          eq(commands.status, "pending"),
          gt(commands.expiresAt, at),
          or(isNull(commands.publishedAt), lte(commands.publishedAt, cutoff)),
          sql`(${commands.deviceId}, ${commands.seq}) in (${keys})`,
        ),
      )
      .returning({ payload: commands.payload });
    for (const row of rows) claimed.push(row.payload as Command);
  }
  return claimed.sort((a, b) => (a.deviceId === b.deviceId ? a.seq - b.seq : a.deviceId < b.deviceId ? -1 : 1));
}

/** Longest gap, in retry-timer ticks, between two re-publishes of the same pending commands to a device. */
export const MAX_RETRY_GAP_TICKS = 8;

/**
 * Which pending commands the retry timer re-publishes on a tick (HASHWARD_COMMAND_RETRY_MS apart): a device's
 * pending commands go out on the first tick that sees them, then after 1, 2, 4, ... MAX_RETRY_GAP_TICKS ticks
 * while they stay the same, and again on the next tick when they change (an ack, a new command) or after
 * `reset` (the device said hello on a new connection: onHello has just published them).
 *
 * Why a backoff: on a live connection a QoS 1 command is delivered or the connection drops (and the hello of the
 * next one re-publishes it), so a retry is for the rare lost handling. Re-publishing every tick to a device that
 * has not acked yet only because it or the plane is busy multiplies the load exactly when there is least room
 * (100 agents on one loaded machine answered each copy with a queued ack, and the release of the whole fleet
 * never completed, test/e2e/tls-renewal.test.ts). A device's commands go out together and in seq order: the
 * agent refuses a seq below one it executed (HW-CMD-1). In memory, per replica: a restart starts afresh.
 */
export class CommandRetrySchedule {
  #tick = 0;
  readonly #devices = new Map<string, { seqs: string; gap: number; dueTick: number }>();

  /** Advances one tick; returns the commands of `pending` (all pending commands, seq order per device) due now. */
  due(pending: readonly Command[]): Command[] {
    this.#tick += 1;
    const byDevice = new Map<string, Command[]>();
    for (const command of pending) {
      const list = byDevice.get(command.deviceId);
      if (list) list.push(command);
      else byDevice.set(command.deviceId, [command]);
    }
    for (const deviceId of this.#devices.keys()) if (!byDevice.has(deviceId)) this.#devices.delete(deviceId);
    const out: Command[] = [];
    for (const [deviceId, list] of byDevice) {
      const seqs = list.map((command) => command.seq).join(",");
      const entry = this.#devices.get(deviceId);
      if (entry && entry.seqs === seqs && this.#tick < entry.dueTick) continue;
      const gap = entry && entry.seqs === seqs ? Math.min(entry.gap * 2, MAX_RETRY_GAP_TICKS) : 1;
      this.#devices.set(deviceId, { seqs, gap, dueTick: this.#tick + gap });
      out.push(...list);
    }
    return out;
  }

  /** Forgets the device's schedule: its next tick re-publishes whatever is pending. */
  reset(deviceId: string): void {
    this.#devices.delete(deviceId);
  }
}

/** Pending, unexpired commands of the device, in seq order (what a (re)connecting agent must receive). */
export async function pendingCommands(tx: Tx, deviceIds: string[] | null, now: number): Promise<Command[]> {
  const base = and(eq(commands.status, "pending"), gt(commands.expiresAt, new Date(now)));
  const where = deviceIds ? and(base, inArray(commands.deviceId, deviceIds)) : base;
  const rows = await tx.select({ payload: commands.payload }).from(commands).where(where).orderBy(asc(commands.deviceId), asc(commands.seq));
  return rows.map((row) => row.payload as Command);
}

/**
 * Marks pending commands past their expiry `expired` and moves containment back from the requested state
 * (HW-TRUST-3). One UPDATE ... RETURNING claims each command once, so several replicas can run this.
 */
export async function expireCommands(ctx: ServiceContext, now: number): Promise<number> {
  const at = new Date(now);
  return ctx.db.transaction(async (tx) => {
    const expired = await tx
      .update(commands)
      .set({ status: "expired", reason: "expired before the device acknowledged it" })
      .where(and(eq(commands.status, "pending"), lte(commands.expiresAt, at)))
      .returning({ deviceId: commands.deviceId, seq: commands.seq, action: commands.action, payload: commands.payload });
    const records: TransitionRecord[] = [];
    const actor: Actor = { kind: "system", id: "command-expiry" };
    for (const command of expired) {
      if (command.action !== "quarantine" && command.action !== "release") continue;
      const device = await lockDevice(tx, command.deviceId);
      if (!device || device.containment !== REQUESTED_STATE[command.action]) continue;
      const from = device.containment as ContainmentState;
      if (!canTransition("containment", from, "command-expired")) continue;
      const to = transition("containment", from, "command-expired");
      await tx.update(devices).set({ containment: to, updatedAt: at }).where(eq(devices.id, device.id));
      records.push({
        deviceId: device.id,
        machine: "containment",
        from,
        to,
        reason: `${command.action} command ${command.seq} expired before the device acknowledged it`,
        actor,
        evidence: { command: command.payload },
      });
    }
    await recordTransitions(tx, records, at);
    return expired.length;
  });
}

/**
 * Issues one signed command of any action (update, set-policy, ...) to each already-locked, accepted device in
 * `tx`: the device's next seq (HW-CMD-1), an expiry of `ttlMs`, and with `supersede` the device's earlier pending
 * commands of the same action are marked superseded (one live request per action). Publish `toPublish` after
 * the transaction commits (publishCommands); the retry timer re-publishes until acked or expired.
 */
export async function issueCommands(
  ctx: ServiceContext,
  tx: Tx,
  rows: DeviceRow[],
  input: { action: CommandAction; params: Record<string, unknown>; actor: Actor; ttlMs?: number; supersede?: boolean },
  now: number,
): Promise<{ views: CommandView[]; toPublish: Command[] }> {
  const at = new Date(now);
  const expiresAt = now + (input.ttlMs ?? ctx.options.commandTtlMs);
  const issued: CommandRow[] = [];
  const toPublish: Command[] = [];
  for (const row of rows) {
    const { command, payload } = signedCommand(ctx, row, input.action, input.params, input.actor, now, expiresAt);
    issued.push(command);
    toPublish.push(payload);
  }
  for (const ids of chunks(rows.map((row) => row.id), 5000)) {
    if (input.supersede) {
      await tx
        .update(commands)
        .set({ status: "superseded", reason: `superseded by a newer ${input.action}` })
        .where(and(inArray(commands.deviceId, ids), eq(commands.status, "pending"), eq(commands.action, input.action)));
    }
    await tx.update(devices).set({ nextCommandSeq: sql`${devices.nextCommandSeq} + 1`, updatedAt: at }).where(inArray(devices.id, ids));
  }
  for (const part of chunks(issued)) await tx.insert(commands).values(part);
  await recordAudit(
    tx,
    issued.map((command) => ({ actor: input.actor, action: `command.${input.action}`, target: command.deviceId, detail: { seq: command.seq, params: command.params } })),
    at,
  );
  return { views: issued.map(toCommandView), toPublish };
}

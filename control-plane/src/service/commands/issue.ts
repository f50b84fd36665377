/**
 * Issuing signed plane -> device commands: each with the device's next seq, an expiry, and a signature by the
 * plane's command key over the canonical command (what rule HW-CMD-1 on the device relies on); a new containment
 * request supersedes the pending one. Publishing is publish.ts, the retry schedule pending.ts, expiry expire.ts.
 */
import { and, asc, eq, inArray, sql } from "drizzle-orm";
import { signObject } from "../../../../shared/crypto/index.js";
import { PROTOCOL_VERSION, type Command, type CommandAction } from "../../../../shared/protocol/index.js";
import { commands, devices } from "../../db/index.js";
import { transition, type ContainmentEvent } from "../../trust/index.js";
import { iso, type ServiceContext } from "../context.js";
import { chunks, type DeviceRow, recordAudit, recordTransitions, type TransitionRecord, type Tx } from "../tx.js";
import type { Actor, CommandView, ContainmentState } from "../types.js";

/** A `commands` row as drizzle reads it. */
export type CommandRow = typeof commands.$inferSelect;
/** The two commands that move the containment machine. */
export type ContainmentAction = Extract<CommandAction, "quarantine" | "release">;

/** The API view of a stored command. */
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

/** What issuing commands in a transaction yields. */
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
): Promise<IssueResult> {
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

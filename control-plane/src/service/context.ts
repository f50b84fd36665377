/**
 * What every service module shares: dependencies, options, and the writers for transition and audit rows.
 * Rule HW-DB-1: a state change, its transition row and its audit row are written by the same transaction `tx`.
 */
import { randomBytes } from "node:crypto";
import type pino from "pino";
import { eq, inArray } from "drizzle-orm";
import { createFastSigner, toBase64Url, type KeyPair } from "../../../shared/crypto/index.js";
import { auditLog, type Database, devices, transitions } from "../db/index.js";
import { planeEventsForTransitions, recordPlaneEvents } from "../events/record.js";
import type { MachineName } from "../trust/index.js";
import type { Actor, AttestationResult, DevicePublisher, DeviceTelemetry, DeviceView } from "./types.js";

export interface ServiceOptions {
  /** How long a signed command stays valid (its `expiresAt`); pending commands are retried until then. */
  commandTtlMs: number;
  /** How long a challenge nonce may be answered. */
  challengeTtlMs: number;
  /** A device not seen for this long moves to appraisal `stale`. */
  staleAfterMs: number;
  /** Policy: quarantine a device automatically when its appraisal becomes contraindicated. */
  autoQuarantine: "contraindicated" | "off";
  /** Returned to devices in the enrollment response. */
  publicMqttUrl?: string;
  /**
   * Cap on devices waiting in `pending` (enrollment needs no login, so an attacker on the network could
   * otherwise fill the database with made-up keys). Above it a new key without a token gets HTTP 429.
   */
  maxPendingDevices?: number;
  /**
   * HW-AUTH-2: this many session takeovers (a second authenticated CONNECT while the device is connected) within
   * sessionTakeoverWindowMs move a trusted/unknown/stale device's appraisal to `warning` ("session takeover").
   * Defaults 3 takeovers in 60000 ms.
   */
  sessionTakeoverThreshold?: number;
  sessionTakeoverWindowMs?: number;
  /**
   * HW-HA-4: how often the retry timer runs (HASHWARD_COMMAND_RETRY_MS, default 5000). A pending command is
   * re-published by a replica only when no replica handed it to the broker within 0.9 of this.
   */
  commandRetryMs?: number;
  /** Dashboard charts: heartbeat telemetry is kept at most once per device per this many ms (default 300,000). */
  telemetrySampleMs?: number;
}

export interface ServiceContext {
  db: Database;
  publisher: DevicePublisher;
  commandKey: KeyPair;
  commandPublicKey: string;
  /** Signs with the command key through node:crypto (same bytes as @noble/ed25519, see shared/crypto). */
  signWithCommandKey: (message: Uint8Array) => Uint8Array;
  logger: pino.Logger;
  now: () => number;
  /** A clock that never steps (ms, `performance.now`): tells a step of `now` from elapsed time (HW-FAULT-11). */
  monotonicNow: () => number;
  options: ServiceOptions;
}

/** What every service over the database is built from (the domain services, the policy service, ...). */
export interface ServiceDeps {
  db: Database;
  publisher: DevicePublisher;
  commandKey: KeyPair;
  logger: pino.Logger;
  now?: () => number;
  /** Default: `now` when one is given (a test clock), else `performance.now`. */
  monotonicNow?: () => number;
  options: ServiceOptions;
}

export function createServiceContext(deps: ServiceDeps): ServiceContext {
  return {
    db: deps.db,
    publisher: deps.publisher,
    commandKey: deps.commandKey,
    commandPublicKey: toBase64Url(deps.commandKey.publicKey),
    signWithCommandKey: createFastSigner(deps.commandKey.privateKey),
    logger: deps.logger,
    now: deps.now ?? Date.now,
    // A caller that brings its own `now` (a test's clock) without a monotonic one moves both together: no steps.
    monotonicNow: deps.monotonicNow ?? deps.now ?? (() => performance.now()),
    options: deps.options,
  };
}

/** Any transaction (or the database). PgTransaction extends PgDatabase, so both fit. */
export type Tx = Database;

export type DeviceRow = typeof devices.$inferSelect;

/** Device timestamps in signed messages may differ from ours by at most this much (enrollment, timer evidence). */
export const MAX_CLOCK_DIFFERENCE_MS = 5 * 60_000;

export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(9).toString("hex")}`;
}

export function newSecret(prefix: "hwa_" | "hwe_"): string {
  return `${prefix}${toBase64Url(new Uint8Array(randomBytes(32)))}`;
}

export function iso(date: Date | null): string | null {
  return date ? date.toISOString() : null;
}

export interface TransitionRecord {
  deviceId: string;
  machine: MachineName;
  from: string;
  to: string;
  reason: string;
  actor: Actor;
  evidence?: unknown;
}

const INSERT_CHUNK = 500;

function chunks<T>(items: T[], size = INSERT_CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Writes transition rows and one audit row per transition (action `<machine>.<to>`), batched, and the operator
 * events they mean (stream + webhook outbox, control-plane/src/events). HW-DB-1, HW-HOOK-2
 */
export async function recordTransitions(tx: Tx, records: TransitionRecord[], at: Date): Promise<void> {
  if (records.length === 0) return;
  for (const part of chunks(records)) {
    await tx.insert(transitions).values(
      part.map((r) => ({
        deviceId: r.deviceId,
        machine: r.machine,
        fromState: r.from,
        toState: r.to,
        reason: r.reason,
        actor: r.actor,
        evidence: r.evidence ?? null,
        at,
      })),
    );
    await tx.insert(auditLog).values(
      part.map((r) => ({
        at,
        actor: r.actor,
        action: `${r.machine}.${r.to}`,
        target: r.deviceId,
        detail: { from: r.from, to: r.to, reason: r.reason },
      })),
    );
  }
  await recordPlaneEvents(tx, planeEventsForTransitions(records), at);
}

export interface AuditRecord {
  actor: Actor;
  action: string;
  target: string | null;
  detail?: unknown;
}

export async function recordAudit(tx: Tx, records: AuditRecord[], at: Date): Promise<void> {
  for (const part of chunks(records)) {
    await tx.insert(auditLog).values(part.map((r) => ({ at, actor: r.actor, action: r.action, target: r.target, detail: r.detail ?? null })));
  }
}

/** Locks the rows (ordered by id, so concurrent bulk calls cannot deadlock) for the rest of the transaction. */
export async function lockDevices(tx: Tx, ids: string[]): Promise<DeviceRow[]> {
  if (ids.length === 0) return [];
  const rows: DeviceRow[] = [];
  for (const part of chunks([...ids].sort(), 5000)) {
    rows.push(...(await tx.select().from(devices).where(inArray(devices.id, part)).orderBy(devices.id).for("update")));
  }
  return rows;
}

export async function lockDevice(tx: Tx, id: string): Promise<DeviceRow | undefined> {
  const [row] = await tx.select().from(devices).where(eq(devices.id, id)).for("update");
  return row;
}

export function toDeviceView(row: DeviceRow): DeviceView {
  return {
    deviceId: row.id,
    publicKey: row.publicKey,
    model: row.model,
    firmwareVersion: row.firmwareVersion,
    agentVersion: row.agentVersion,
    enrollment: row.enrollment as DeviceView["enrollment"],
    appraisal: row.appraisal as DeviceView["appraisal"],
    containment: row.containment as DeviceView["containment"],
    connected: row.connected,
    lastSeenAt: iso(row.lastSeenAt),
    lastAppraisal: (row.lastAppraisal as AttestationResult | null) ?? null,
    telemetry: (row.telemetry as DeviceTelemetry | null) ?? null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

export { chunks };

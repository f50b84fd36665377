/**
 * What every service module shares: dependencies, options and the clock (`ServiceContext`), and small value
 * helpers (ids, secrets, ISO times). The transaction helpers (transition and audit rows, row locks) are in tx.ts.
 */
import { randomBytes } from "node:crypto";
import type pino from "pino";
import { createFastSigner, toBase64Url, type KeyPair } from "../../../shared/crypto/index.js";
import type { Database } from "../db/index.js";
import type { DevicePublisher, DeviceSideHooks } from "./types.js";

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
  /** What other concerns (guard policy, farm alerts) add to the device side; empty by default. */
  hooks: DeviceSideHooks;
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
  /** Optional device-side hooks (policy delivery on hello, policy acks, farm alerts on heartbeats). */
  hooks?: DeviceSideHooks;
}

/** The context every service module is built on: `deps` with defaults filled in (clocks, no hooks). */
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
    hooks: deps.hooks ?? {},
  };
}

/** Device timestamps in signed messages may differ from ours by at most this much (enrollment, timer evidence). */
export const MAX_CLOCK_DIFFERENCE_MS = 5 * 60_000;

/** A new random id `<prefix>_<18 hex digits>` (72 bits), e.g. `tok_...`, `rv_...`. */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(9).toString("hex")}`;
}

/** A new bearer secret: `hwa_` (API token) or `hwe_` (enrollment token) and 32 random bytes, base64url. */
export function newSecret(prefix: "hwa_" | "hwe_"): string {
  return `${prefix}${toBase64Url(new Uint8Array(randomBytes(32)))}`;
}

/** ISO 8601 of `date`, or null for null. */
export function iso(date: Date | null): string | null {
  return date ? date.toISOString() : null;
}


/**
 * Heartbeats are the hottest write (one per device every few seconds) and PGlite costs ~100 us per query, so
 * the latest heartbeat per device is kept in memory and flushed in one UPDATE ... FROM (VALUES ...) per flush.
 * Losing up to a second of heartbeats on SIGKILL is acceptable: they carry no trust decision.
 *
 * HW-LIVE-1: liveness (last-seen, what the stale timer reads) and telemetry come only from signed messages.
 * A heartbeat or hello is verified here before anything is buffered, without a database query: the broker hands
 * over the connection's `DeviceSession` (the enrolled key from its identity cache, the connect-token nonce, the
 * last heartbeat seq accepted on that connection). The replay guard is the connection binding plus a seq:
 *   - `connectNonce` must be the nonce of the connect token that opened this connection; tokens are single-use
 *     (HW-AUTH-1), so a heartbeat captured on one connection is worthless on any other, and a party holding a
 *     session it opened with a harvested token cannot present the device's heartbeats as its own;
 *   - `seq` must be above the last accepted on this connection (kept in memory with the connection: nothing to
 *     store, nothing lost on a plane restart, since the restart ends the connection too);
 *   - `ts` must be within MAX_CLOCK_DIFFERENCE_MS of the plane's clock (as for unsolicited evidence), which bounds
 *     how long a heartbeat held back by a man in the middle can still count.
 * Cheap checks come first; the Ed25519 check uses the native verifier (shared/crypto `verifyBytesFast`).
 */
import { sql } from "drizzle-orm";
import { telemetrySamples } from "../db/index.js";
import { fromBase64Url, verifyBytesFast, verifySignedObject } from "../../../shared/crypto/index.js";
import type { Heartbeat, Hello } from "../../../shared/protocol/index.js";
import { LivenessRefusal } from "../errors.js";
import { MAX_CLOCK_DIFFERENCE_MS, type ServiceContext } from "./context.js";
import type { DeviceSession } from "./types.js";

/**
 * Checks a hello or heartbeat against the connection it arrived on (HW-LIVE-1, see the file comment). Throws
 * LivenessRefusal (reason `wrong-connection`, `clock`, `replay` or `bad-signature`); never changes `session`.
 */
export function verifyLiveness(message: Hello | Heartbeat, session: DeviceSession, nowMs: number): void {
  if (message.connectNonce !== session.connectNonce) {
    throw new LivenessRefusal(`${message.type} from ${message.deviceId} was signed for another connection`, "wrong-connection");
  }
  if (Math.abs(nowMs - message.ts) > MAX_CLOCK_DIFFERENCE_MS) {
    throw new LivenessRefusal(`${message.type} ts ${message.ts} is more than 5 minutes from now (${nowMs})`, "clock");
  }
  if (message.type === "heartbeat" && message.seq <= session.lastHeartbeatSeq) {
    throw new LivenessRefusal(`heartbeat seq ${message.seq} is not above ${session.lastHeartbeatSeq} on this connection (replay)`, "replay");
  }
  try {
    verifySignedObject(message, fromBase64Url(session.publicKey), verifyBytesFast); // HW-SIG-1, HW-LIVE-1
  } catch (error) {
    throw new LivenessRefusal(`${message.type} from ${message.deviceId}: ${error instanceof Error ? error.message : String(error)}`, "bad-signature");
  }
}

const FLUSH_INTERVAL_MS = 1000;
const DEFAULT_TELEMETRY_SAMPLE_MS = 300_000;
// Six parameters per sample row.
const SAMPLES_PER_STATEMENT = 5_000;
// Three parameters per row; PostgreSQL allows 65535 per statement.
const ROWS_PER_STATEMENT = 10_000;

export class HeartbeatBuffer {
  #pending = new Map<string, { seenAt: number; telemetry: Heartbeat["telemetry"] | null }>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #flushing: Promise<void> = Promise.resolve();
  /** When each device's telemetry was last kept in `telemetry_samples` (plane clock, ms). */
  #lastSampleAt = new Map<string, number>();

  constructor(private readonly ctx: ServiceContext) {}

  /**
   * Verifies `heartbeat` against its connection (HW-LIVE-1; throws LivenessRefusal having changed nothing), then
   * records the connection's new seq and buffers last-seen (the plane's clock) and telemetry for the next flush.
   */
  add(heartbeat: Heartbeat, session: DeviceSession): void {
    verifyLiveness(heartbeat, session, this.ctx.now());
    session.lastHeartbeatSeq = heartbeat.seq;
    this.#pending.set(heartbeat.deviceId, { seenAt: this.ctx.now(), telemetry: heartbeat.telemetry ?? null });
    if (!this.#timer) {
      this.#timer = setInterval(() => {
        this.flush().catch((error: unknown) => this.ctx.logger.error({ err: error }, "heartbeat flush failed"));
      }, FLUSH_INTERVAL_MS);
      this.#timer.unref?.();
    }
  }

  /** Writes everything buffered so far; concurrent callers wait for the same write. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(() => this.#write(), () => this.#write());
    return this.#flushing;
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.flush();
  }

  async #write(): Promise<void> {
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending];
    this.#pending = new Map();
    try {
      for (let i = 0; i < batch.length; i += ROWS_PER_STATEMENT) {
        const values = batch
          .slice(i, i + ROWS_PER_STATEMENT)
          .map(([id, { seenAt, telemetry }]) => sql`(${id}::text, ${new Date(seenAt).toISOString()}::timestamptz, ${telemetry ? JSON.stringify(telemetry) : null}::jsonb)`);
        await this.ctx.db.execute(sql`
          update devices as d
          set last_seen_at = greatest(d.last_seen_at, v.seen_at), telemetry = coalesce(v.telemetry, d.telemetry)
          from (values ${sql.join(values, sql`, `)}) as v(id, seen_at, telemetry)
          where d.id = v.id`);
      }
      await this.#sample(batch);
    } catch (error) {
      // Put back what was not written unless something newer arrived meanwhile.
      for (const [id, entry] of batch) if (!this.#pending.has(id)) this.#pending.set(id, entry);
      throw error;
    }
  }

  /**
   * Keeps telemetry over time for the dashboard's charts: at most one row per device per `telemetrySampleMs`
   * (ServiceOptions). A sample of a device that was deleted meanwhile is simply stored; the retention prunes it.
   */
  async #sample(batch: [string, { seenAt: number; telemetry: Heartbeat["telemetry"] | null }][]): Promise<void> {
    const every = this.ctx.options.telemetrySampleMs ?? DEFAULT_TELEMETRY_SAMPLE_MS;
    const rows: (typeof telemetrySamples.$inferInsert)[] = [];
    for (const [deviceId, { seenAt, telemetry }] of batch) {
      if (!telemetry) continue;
      const last = this.#lastSampleAt.get(deviceId);
      if (last !== undefined && seenAt - last < every) continue;
      rows.push({
        deviceId,
        at: new Date(seenAt),
        hashrateGhs: telemetry.hashrateGhs ?? null,
        temperaturesC: telemetry.temperaturesC ?? null,
        fanRpm: telemetry.fanRpm ?? null,
        activePool: telemetry.activePool ?? null,
      });
    }
    for (let i = 0; i < rows.length; i += SAMPLES_PER_STATEMENT) {
      await this.ctx.db.insert(telemetrySamples).values(rows.slice(i, i + SAMPLES_PER_STATEMENT)).onConflictDoNothing();
    }
    for (const row of rows) this.#lastSampleAt.set(row.deviceId, (row.at as Date).getTime());
  }
}

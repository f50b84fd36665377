/**
 * Heartbeats are the hottest write (one per device every few seconds) and PGlite costs ~100 us per query, so
 * the latest heartbeat per device is kept in memory and flushed in one UPDATE ... FROM (VALUES ...) per flush.
 * Losing up to a second of heartbeats on SIGKILL is acceptable: they carry no trust decision.
 */
import { sql } from "drizzle-orm";
import type { Heartbeat } from "../../../shared/protocol/index.js";
import type { ServiceContext } from "./context.js";

const FLUSH_INTERVAL_MS = 1000;
// Three parameters per row; PostgreSQL allows 65535 per statement.
const ROWS_PER_STATEMENT = 10_000;

export class HeartbeatBuffer {
  #pending = new Map<string, { seenAt: number; telemetry: Heartbeat["telemetry"] | null }>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #flushing: Promise<void> = Promise.resolve();

  constructor(private readonly ctx: ServiceContext) {}

  add(heartbeat: Heartbeat): void {
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
    } catch (error) {
      // Put back what was not written unless something newer arrived meanwhile.
      for (const [id, entry] of batch) if (!this.#pending.has(id)) this.#pending.set(id, entry);
      throw error;
    }
  }
}

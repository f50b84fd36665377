/**
 * HW-HA-3: the leader lease. Fleet-wide timers (staleness sweep, rollout steps, TUF timestamp/snapshot renewal)
 * run on the one replica that holds the `leases` row `plane-timers`; the others stand by and take it over when it
 * is not renewed in time.
 *
 * Why a lease row and not `pg_try_advisory_lock` on a dedicated session: a session lock lives exactly as long as
 * one TCP connection, so it needs a connection kept out of the pool for the life of the process, it is lost
 * silently when that connection drops (a database restart, a proxy's idle timeout) while the holder keeps
 * working, and its holder cannot be seen or named by an operator. A row renewed through the ordinary pool
 * survives a reconnect, expires on the database's own clock (no clock skew between replica hosts), and is
 * readable (`select * from leases`).
 *
 * Bound: a holder that dies (SIGKILL, host lost) keeps the lease at most `ttlMs`; the others try every
 * `ttlMs / 3`, so one of them leads at most `ttlMs + ttlMs / 3` after the holder's last renewal (docs/scale.md).
 * A holder whose renewals fail (or stall) stops starting timer work `ttlMs / 3` before the database would let
 * another replica take over, measured on its own monotonic clock from before the renewal was sent. The timer
 * work itself is safe to overlap (row locks, atomic claims), so a holder frozen mid-task past that point delays
 * nothing and doubles nothing (HW-HA-4).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { sql } from "drizzle-orm";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Database } from "../db/index.js";

export const TIMERS_LEASE = "plane-timers";

/** Who runs the fleet-wide timers; `isLeader()` is read before each run. */
export interface Leadership {
  /** This process's holder id: `<host>:<pid>:<random>` (a new one per start). */
  readonly holder: string;
  /** True while this replica may start fleet-wide timer work (see the module comment for the margins). */
  isLeader(): boolean;
  /** Stops renewing and, when held, gives the lease up at once so another replica leads without waiting. */
  close(): Promise<void>;
}

/** A process alone on its database (PGlite) always leads. */
export function soleLeader(): Leadership {
  return { holder: `${hostname()}:${process.pid}`, isLeader: () => true, close: () => Promise.resolve() };
}

/**
 * One statement takes or renews the lease: insert it, or take it over when it expired, or extend it when we
 * hold it; RETURNING says whether we hold it now and in which term.
 */
async function tryAcquire(db: Database, name: string, holder: string, ttlMs: number): Promise<{ term: number } | null> {
  const result = await db.execute<{ term: string | number }>(sql`
    insert into leases (name, holder, term, acquired_at, expires_at)
    values (${name}, ${holder}, 1, now(), now() + ${ttlMs} * interval '1 millisecond')
    on conflict (name) do update set
      holder = excluded.holder,
      term = case when leases.holder = excluded.holder then leases.term else leases.term + 1 end,
      acquired_at = case when leases.holder = excluded.holder then leases.acquired_at else now() end,
      expires_at = excluded.expires_at
    where leases.holder = excluded.holder or leases.expires_at < now()
    returning term`);
  const row = (result as unknown as { rows: { term: string | number }[] }).rows[0];
  return row ? { term: Number(row.term) } : null;
}

/**
 * Starts competing for lease `name` on PostgreSQL: one attempt now (so a lone replica leads from its first
 * tick), then one every `ttlMs / 3`. Metrics: `hashward_leader` (1 while this replica leads) and
 * `hashward_leader_acquired_total`.
 * @param ttlMs how long a renewal holds the lease (HASHWARD_LEASE_TTL_MS); at least 300 ms.
 */
export async function startLeaderLease(deps: { db: Database; name?: string; ttlMs: number; logger: Logger; registry: Registry }): Promise<Leadership> {
  const { db, ttlMs, logger } = deps;
  const name = deps.name ?? TIMERS_LEASE;
  const holder = `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
  const renewEveryMs = Math.max(100, Math.floor(ttlMs / 3));
  const acquired = new Counter({ name: "hashward_leader_acquired_total", help: "Times this replica took the timers lease (HW-HA-3)", registers: [deps.registry] });

  /** Monotonic time until which this replica may start timer work; 0 = not leading. */
  let leadUntil = 0;
  let term: number | null = null;
  let closed = false;
  const isLeader = (): boolean => !closed && performance.now() < leadUntil;
  new Gauge({
    name: "hashward_leader",
    help: "1 while this replica holds the lease that runs the fleet-wide timers (HW-HA-3)",
    registers: [deps.registry],
    collect() {
      this.set(isLeader() ? 1 : 0); // read at scrape time: a lapsed lease shows at once, even while a renewal hangs
    },
  });

  async function attempt(): Promise<void> {
    const sentAt = performance.now();
    let held: { term: number } | null;
    try {
      held = await tryAcquire(db, name, holder, ttlMs);
    } catch (error) {
      // Unknown outcome: keep leading only until the margin runs out (leadUntil is left as it was).
      logger.warn({ err: error, lease: name }, "lease renewal failed; retrying");
      return;
    }
    if (closed) return;
    if (held) {
      // The database counts ttlMs from when it ran the statement, which is after sentAt: stopping at
      // sentAt + ttlMs - renewEveryMs leaves a full renewal period of margin.
      leadUntil = sentAt + ttlMs - renewEveryMs;
      if (term !== held.term) {
        term = held.term;
        acquired.inc();
        logger.info({ lease: name, holder, term, ttlMs }, "leading: this replica runs the fleet-wide timers");
      }
    } else if (term !== null) {
      logger.warn({ lease: name, holder, term }, "lease lost to another replica; standing by");
      term = null;
      leadUntil = 0;
    }
  }

  await attempt();
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    running ??= attempt().finally(() => {
      running = null;
    });
  }, renewEveryMs);
  timer.unref();

  return {
    holder,
    isLeader,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await running;
      leadUntil = 0;
      if (term === null) return;
      // Graceful stop: hand over now instead of after ttlMs.
      await db
        .execute(sql`delete from leases where name = ${name} and holder = ${holder}`)
        .catch((error: unknown) => logger.warn({ err: error, lease: name }, "could not give up the lease; it expires by itself"));
      logger.info({ lease: name, holder, term }, "lease given up");
    },
  };
}

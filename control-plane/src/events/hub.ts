/**
 * The live event hub behind `GET /api/v1/events/stream`. It reads committed rows of `plane_events` in stream
 * position order (so what a client sees is exactly what the database holds, after commit, from this plane or any
 * other one sharing the database) and fans them out to subscribers.
 *
 * HW-SSE-2: reads are woken by the writers of this process right after their transaction commits
 * (`onPlaneEventsCommitted`), so an event reaches the clients without a poll interval's delay; a slow poll
 * (`pollIntervalMs`, default 1 s) picks up what other processes (replicas) commit. The cursor is the commit-ordered
 * `position` (migration 0008), not the id: on PostgreSQL a transaction holding a lower id can commit after one
 * holding a higher id, and an id cursor would skip it for good; positions are taken at commit, one committer at a
 * time, so a position is never visible before every lower one is.
 *
 * HW-SSE-1: every subscriber has a bounded queue (`maxQueuedPerClient` events). A subscriber whose queue is full
 * (a client not reading fast enough) is dropped at once and counted in `hashward_sse_clients_dropped_total`:
 * the poller never waits for a client, so a slow client cannot slow the plane. The number of open streams is bounded
 * too, in all (`maxSubscribers`) and per holder (`maxSubscribersPerHolder`, an API token): one more is refused with
 * a CapacityError (HTTP 429) and counted in `hashward_sse_clients_refused_total`, so one token cannot hold the
 * plane's memory with thousands of idle streams.
 */
import { and, asc, desc, eq, gt, inArray, isNotNull, lte, type SQL } from "drizzle-orm";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { planeEvents, type Database } from "../db/index.js";
import { CapacityError } from "../errors.js";
import type { PlaneEvent, PlaneEventKind } from "./kinds.js";
import { onPlaneEventsCommitted } from "./record.js";

export interface EventFilter {
  deviceId?: string;
  /** Empty or absent: every kind. */
  kinds?: readonly PlaneEventKind[];
}

export interface EventHubOptions {
  /**
   * How often committed events are read while clients are connected (ms), for events other processes commit;
   * this process's own commits wake the reader at once. Default 1,000.
   */
  pollIntervalMs?: number;
  /** Events waiting for one client before it is dropped. Default 1,000; 1..100,000. */
  maxQueuedPerClient?: number;
  /** Rows read per poll or replay page. Default 500. */
  pageSize?: number;
  /** Open streams in all on this plane. Default 2,000; 1..1,000,000. */
  maxSubscribers?: number;
  /** Open streams per holder (the API token behind the request or the dashboard session). Default 16; >= 1. */
  maxSubscribersPerHolder?: number;
}

export interface EventSubscription {
  /** The last stream position committed when the subscription started: live events are those above it. */
  readonly startId: number;
  /** The next live event matching the filter, or null once the subscription is closed or dropped. */
  next(): Promise<PlaneEvent | null>;
  /** Up to `max` live events already queued, without waiting (empty when none is). */
  drain(max: number): PlaneEvent[];
  /** True when the hub dropped this subscriber for a full queue. */
  readonly dropped: boolean;
  close(): void;
}

export interface EventHub {
  /**
   * A live subscription to the events matching `filter`, held by `holder` (an API token id; omitted: counted in
   * the total only). Throws CapacityError when `maxSubscribers` streams are open, or `maxSubscribersPerHolder`
   * for this holder (HW-SSE-1); closing a subscription frees its place.
   */
  subscribe(filter: EventFilter, holder?: string): Promise<EventSubscription>;
  /**
   * Committed events with a position above `afterId` and at most `upToId` matching the filter, in position order,
   * one page (`pageSize` rows) at a time; used to replay for `Last-Event-ID`.
   */
  replay(filter: EventFilter, afterId: number, upToId: number): Promise<PlaneEvent[]>;
  /** Reads new committed events now (the poll timer does the same). */
  poll(): Promise<void>;
  close(): Promise<void>;
}

interface Subscriber {
  filter: EventFilter;
  holder: string | undefined;
  queue: PlaneEvent[];
  waiter: ((event: PlaneEvent | null) => void) | null;
  closed: boolean;
  dropped: boolean;
}

type Row = typeof planeEvents.$inferSelect;

/** A committed row (its position is set at commit) as the stream carries it: `id` is the stream position. */
function toEvent(row: Row): PlaneEvent {
  // The writer typed `data` by its kind (PlaneEventRecord), so the stored row has that kind's shape.
  return { id: row.position!, kind: row.kind as PlaneEventKind, deviceId: row.deviceId, at: row.at.toISOString(), data: row.data } as PlaneEvent;
}

export function matches(filter: EventFilter, event: Pick<PlaneEvent, "kind" | "deviceId">): boolean {
  if (filter.deviceId !== undefined && event.deviceId !== filter.deviceId) return false;
  if (filter.kinds && filter.kinds.length > 0 && !filter.kinds.includes(event.kind)) return false;
  return true;
}

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function createEventHub(deps: { db: Database; logger: Logger; registry: Registry; options?: EventHubOptions }): EventHub {
  const { db, logger, registry } = deps;
  const pollIntervalMs = deps.options?.pollIntervalMs ?? 1_000;
  const maxQueued = deps.options?.maxQueuedPerClient ?? 1_000;
  const pageSize = deps.options?.pageSize ?? 500;
  if (!Number.isInteger(maxQueued) || maxQueued < 1 || maxQueued > 100_000) throw new RangeError(`maxQueuedPerClient must be 1..100000, got ${maxQueued}`);
  const maxSubscribers = deps.options?.maxSubscribers ?? 2_000;
  const maxPerHolder = deps.options?.maxSubscribersPerHolder ?? 16;
  if (!Number.isInteger(maxSubscribers) || maxSubscribers < 1 || maxSubscribers > 1_000_000) throw new RangeError(`maxSubscribers must be 1..1000000, got ${maxSubscribers}`);
  if (!Number.isInteger(maxPerHolder) || maxPerHolder < 1) throw new RangeError(`maxSubscribersPerHolder must be an integer >= 1, got ${maxPerHolder}`);
  if (!Number.isInteger(pollIntervalMs) || pollIntervalMs < 10) throw new RangeError(`pollIntervalMs must be an integer >= 10, got ${pollIntervalMs}`);

  const dropped = metric(registry, "hashward_sse_clients_dropped_total", () => new Counter({ name: "hashward_sse_clients_dropped_total", help: "Event stream clients dropped because their queue was full (too slow)", registers: [registry] }));
  const connected = metric(registry, "hashward_sse_clients", () => new Gauge({ name: "hashward_sse_clients", help: "Event stream clients connected", registers: [registry] }));

  const refused = metric(registry, "hashward_sse_clients_refused_total", () => new Counter({ name: "hashward_sse_clients_refused_total", help: "Event stream requests refused because too many streams were open, in all or for one holder (HTTP 429)", labelNames: ["limit"] as const, registers: [registry] }));

  const subscribers = new Set<Subscriber>();
  /** Open streams per holder, for `maxSubscribersPerHolder` (reserved ones included). */
  const perHolder = new Map<string, number>();
  /** Subscriptions past the limit checks, still catching up (not in `subscribers` yet). */
  let reserved = 0;
  function releaseHolder(holder: string | undefined): void {
    if (holder === undefined) return;
    const left = (perHolder.get(holder) ?? 1) - 1;
    if (left <= 0) perHolder.delete(holder);
    else perHolder.set(holder, left);
  }
  let cursor: number | null = null;
  let polling: Promise<void> | null = null;
  /** A commit was signalled while a read ran: read once more when it ends (it may have missed that commit). */
  let again = false;
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  // HW-SSE-2: woken after each local commit that wrote events; only while someone listens.
  const stopListening = onPlaneEventsCommitted(db, () => {
    if (subscribers.size > 0) void poll();
  });

  async function lastId(): Promise<number> {
    const [row] = await db.select({ position: planeEvents.position }).from(planeEvents).where(isNotNull(planeEvents.position)).orderBy(desc(planeEvents.position)).limit(1);
    return row?.position ?? 0;
  }

  function deliver(sub: Subscriber, event: PlaneEvent): void {
    if (sub.closed || !matches(sub.filter, event)) return;
    if (sub.waiter) {
      const wake = sub.waiter;
      sub.waiter = null;
      wake(event);
      return;
    }
    if (sub.queue.length >= maxQueued) {
      // HW-SSE-1: a full queue drops the client rather than buffering without bound or waiting for it.
      sub.dropped = true;
      end(sub);
      dropped.inc();
      logger.warn({ queued: sub.queue.length }, "event stream client dropped: too slow");
      return;
    }
    sub.queue.push(event);
  }

  function end(sub: Subscriber): void {
    if (sub.closed) return;
    sub.closed = true;
    sub.queue.length = 0;
    subscribers.delete(sub);
    releaseHolder(sub.holder);
    connected.set(subscribers.size);
    sub.waiter?.(null);
    sub.waiter = null;
    if (subscribers.size === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  }

  async function pollOnce(): Promise<void> {
    if (cursor === null) cursor = await lastId();
    for (;;) {
      const rows = await db.select().from(planeEvents).where(gt(planeEvents.position, cursor)).orderBy(asc(planeEvents.position)).limit(pageSize);
      for (const row of rows) {
        const event = toEvent(row);
        for (const sub of [...subscribers]) deliver(sub, event);
        cursor = event.id;
      }
      if (rows.length < pageSize) return;
    }
  }

  /** One reader at a time; a wake-up during a read costs one more read, not one per commit. */
  function poll(): Promise<void> {
    if (polling) {
      again = true;
      return polling;
    }
    polling = (async () => {
      do {
        again = false;
        await pollOnce().catch((error: unknown) => logger.error({ err: error }, "event hub poll failed"));
      } while (again && !closed);
    })().finally(() => {
      polling = null;
    });
    return polling;
  }

  return {
    async subscribe(filter, holder) {
      if (closed) throw new Error("event hub is closed");
      // The place is taken before any await (and given back if the catch-up fails), so concurrent requests
      // cannot overshoot the limits.
      if (subscribers.size + reserved >= maxSubscribers) {
        refused.inc({ limit: "total" });
        throw new CapacityError(`too many event streams are open on this plane (${maxSubscribers}); retry later`);
      }
      if (holder !== undefined && (perHolder.get(holder) ?? 0) >= maxPerHolder) {
        refused.inc({ limit: "holder" });
        throw new CapacityError(`this token already holds ${maxPerHolder} open event streams; close one first`);
      }
      reserved += 1;
      if (holder !== undefined) perHolder.set(holder, (perHolder.get(holder) ?? 0) + 1);
      const sub: Subscriber = { filter, holder, queue: [], waiter: null, closed: false, dropped: false };
      try {
        // Catch up first, so the start id is a point every earlier event was read before.
        await poll();
        if (cursor === null) cursor = await lastId();
      } catch (error) {
        releaseHolder(holder);
        throw error;
      } finally {
        reserved -= 1;
      }
      subscribers.add(sub);
      connected.set(subscribers.size);
      if (!timer) {
        timer = setInterval(() => void poll(), pollIntervalMs);
        timer.unref();
      }
      return {
        startId: cursor,
        get dropped() {
          return sub.dropped;
        },
        next() {
          const queued = sub.queue.shift();
          if (queued) return Promise.resolve(queued);
          if (sub.closed) return Promise.resolve(null);
          return new Promise<PlaneEvent | null>((resolve) => {
            sub.waiter = resolve;
          });
        },
        drain(max) {
          return sub.queue.splice(0, Math.max(0, max));
        },
        close: () => end(sub),
      };
    },

    async replay(filter, afterId, upToId) {
      const where: SQL[] = [gt(planeEvents.position, afterId), lte(planeEvents.position, upToId)];
      if (filter.deviceId !== undefined) where.push(eq(planeEvents.deviceId, filter.deviceId));
      if (filter.kinds && filter.kinds.length > 0) where.push(inArray(planeEvents.kind, [...filter.kinds]));
      const rows = await db.select().from(planeEvents).where(and(...where)).orderBy(asc(planeEvents.position)).limit(pageSize);
      return rows.map(toEvent);
    },

    poll,

    async close() {
      closed = true;
      stopListening();
      for (const sub of [...subscribers]) end(sub);
      if (timer) clearInterval(timer);
      timer = null;
      await polling;
    },
  };
}

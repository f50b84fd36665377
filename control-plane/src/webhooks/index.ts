/**
 * Webhooks: endpoints registered by admins for operator event kinds, delivered from the database outbox
 * (`webhook_deliveries`, written with the state change by control-plane/src/events/record.ts).
 *
 * - HW-HOOK-1: every delivery is signed as Standard Webhooks specifies (`webhook-id`, `webhook-timestamp` in Unix
 *   seconds, `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` keyed by the base64 part of
 *   `whsec_<base64>`), through the `standardwebhooks` library; the secret is shown once, at registration.
 * - HW-HOOK-2: at-least-once. A delivery row is claimed (`FOR UPDATE SKIP LOCKED`, then `claimed_until`) so two
 *   planes never send it at the same time; it stays pending until a 2xx answer, retried with exponential backoff
 *   (`retryBaseMs * 2^(attempt-1)`, capped at `retryMaxMs`) until `maxAttempts`; a crash between the receiver's
 *   2xx and our commit resends it with the SAME `webhook-id`, so receivers dedupe by it.
 * - An endpoint is disabled after `maxConsecutiveFailures` failed attempts in a row; its pending deliveries wait.
 * - HW-HOOK-3: loopback/link-local targets are refused at registration and at delivery (./targets.ts).
 */
import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { and, asc, desc, eq, inArray, isNull, lte, or, sql } from "drizzle-orm";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { Webhook } from "standardwebhooks";
import { planeEvents, webhookDeliveries, webhookEndpoints, type Database } from "../db/index.js";
import { NotFoundError } from "../errors.js";
import type { PlaneEventKind } from "../events/index.js";
import { type Actor, recordAudit } from "../service/index.js";
import { checkTargetUrl, guardedLookup, WebhookTargetError } from "./targets.js";

export { checkTargetUrl, guardedLookup, isRefusedAddress, WebhookTargetError } from "./targets.js";

export interface WebhookOptions {
  /** HW-HOOK-3 escape hatch for tests and single-host setups. Default false. */
  allowLoopback: boolean;
  /** Failed attempts in a row that disable an endpoint. Default 10. */
  maxConsecutiveFailures: number;
  /** Attempts per delivery before it is marked failed. Default 12. */
  maxAttempts: number;
  /** First retry delay (ms); doubles per attempt. Default 5,000. */
  retryBaseMs: number;
  /** Longest retry delay (ms). Default 1 hour. */
  retryMaxMs: number;
  /** Per-attempt timeout (ms), connect to last byte. Default 10,000. */
  timeoutMs: number;
}

export const DEFAULT_WEBHOOK_OPTIONS: WebhookOptions = {
  allowLoopback: false,
  maxConsecutiveFailures: 10,
  maxAttempts: 12,
  retryBaseMs: 5_000,
  retryMaxMs: 60 * 60_000,
  timeoutMs: 10_000,
};

export interface WebhookEndpointView {
  id: string;
  url: string;
  kinds: PlaneEventKind[];
  description: string;
  enabled: boolean;
  consecutiveFailures: number;
  disabledReason: string | null;
  createdAt: string;
}

export interface WebhookDeliveryView {
  /** The `webhook-id`. */
  id: string;
  eventId: number;
  kind: string;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  nextAttemptAt: string;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: string;
  deliveredAt: string | null;
}

export interface WebhookService {
  /** Registers an endpoint; the returned `secret` (`whsec_<base64>`) is never shown again. Throws WebhookTargetError (400). */
  register(actor: Actor, input: { url: string; kinds: PlaneEventKind[]; description?: string }): Promise<{ endpoint: WebhookEndpointView; secret: string }>;
  list(): Promise<WebhookEndpointView[]>;
  /** Throws NotFoundError. */
  remove(actor: Actor, id: string): Promise<void>;
  /** Newest first. Throws NotFoundError for an unknown endpoint. */
  deliveries(id: string, limit: number): Promise<WebhookDeliveryView[]>;
  /** Claims and sends due deliveries (the timer job); returns how many attempts were made. */
  deliverDue(): Promise<number>;
}

type EndpointRow = typeof webhookEndpoints.$inferSelect;
type DeliveryRow = typeof webhookDeliveries.$inferSelect;

function endpointView(row: EndpointRow): WebhookEndpointView {
  return {
    id: row.id,
    url: row.url,
    kinds: row.kinds as PlaneEventKind[],
    description: row.description,
    enabled: row.enabled,
    consecutiveFailures: row.consecutiveFailures,
    disabledReason: row.disabledReason,
    createdAt: row.createdAt.toISOString(),
  };
}

function deliveryView(row: DeliveryRow): WebhookDeliveryView {
  return {
    id: row.id,
    eventId: row.eventId,
    kind: row.kind,
    status: row.status as WebhookDeliveryView["status"],
    attempts: row.attempts,
    nextAttemptAt: row.nextAttemptAt.toISOString(),
    lastStatusCode: row.lastStatusCode,
    lastError: row.lastError,
    createdAt: row.createdAt.toISOString(),
    deliveredAt: row.deliveredAt?.toISOString() ?? null,
  };
}

/** Deliveries claimed per tick. */
const BATCH = 50;

interface Attempt {
  statusCode: number | null;
  error: string | null;
}

/** One POST; resolves (never rejects) with the status code or the error. Redirects are not followed. */
function post(url: string, headers: Record<string, string>, body: string, options: WebhookOptions): Promise<Attempt> {
  return new Promise((resolve) => {
    const target = new URL(url);
    const send = target.protocol === "https:" ? httpsRequest : httpRequest;
    const req = send(target, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), "user-agent": "hashward-webhooks" },
      lookup: guardedLookup(options.allowLoopback) as never, // HW-HOOK-3: checked on the address connected to
      timeout: options.timeoutMs,
    });
    const timer = setTimeout(() => req.destroy(new Error(`timed out after ${options.timeoutMs} ms`)), options.timeoutMs);
    req.on("response", (res) => {
      res.resume(); // the answer's body is not needed
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ statusCode: res.statusCode ?? null, error: null });
      });
      res.on("error", () => undefined);
    });
    req.on("timeout", () => req.destroy(new Error(`timed out after ${options.timeoutMs} ms`)));
    req.on("error", (error) => {
      clearTimeout(timer);
      resolve({ statusCode: null, error: error.message.slice(0, 500) });
    });
    req.end(body);
  });
}

export function createWebhookService(deps: { db: Database; logger: Logger; registry: Registry; now?: () => number; options?: Partial<WebhookOptions> }): WebhookService {
  const { db, logger } = deps;
  const now = deps.now ?? Date.now;
  const options: WebhookOptions = { ...DEFAULT_WEBHOOK_OPTIONS, ...deps.options };
  const attempts =
    (deps.registry.getSingleMetric("hashward_webhook_attempts_total") as Counter<"outcome"> | undefined) ??
    new Counter({ name: "hashward_webhook_attempts_total", help: "Webhook delivery attempts by outcome", labelNames: ["outcome"], registers: [deps.registry] });

  async function attempt(delivery: DeliveryRow): Promise<void> {
    const [endpoint] = await db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, delivery.endpointId));
    const [event] = await db.select().from(planeEvents).where(eq(planeEvents.id, delivery.eventId));
    if (!endpoint || !event) return;
    const sentAt = new Date(now());
    // Standard Webhooks payload: { type, timestamp, data }.
    const body = JSON.stringify({
      type: event.kind,
      timestamp: event.at.toISOString(),
      data: { eventId: event.id, deviceId: event.deviceId, ...(event.data as Record<string, unknown>) },
    });
    const signature = new Webhook(endpoint.secret).sign(delivery.id, sentAt, body); // HW-HOOK-1
    const headers = { "webhook-id": delivery.id, "webhook-timestamp": String(Math.floor(sentAt.getTime() / 1000)), "webhook-signature": signature };
    let outcome: Attempt;
    try {
      // HW-HOOK-3: a literal address never goes through the lookup, so the URL is checked again here.
      checkTargetUrl(endpoint.url, options.allowLoopback);
      outcome = await post(endpoint.url, headers, body, options);
    } catch (error) {
      outcome = { statusCode: null, error: error instanceof Error ? error.message : String(error) };
    }
    const ok = outcome.statusCode !== null && outcome.statusCode >= 200 && outcome.statusCode < 300;
    attempts.inc({ outcome: ok ? "delivered" : "failed" });
    const at = new Date(now());
    await db.transaction(async (tx) => {
      if (ok) {
        await tx
          .update(webhookDeliveries)
          .set({ status: "delivered", deliveredAt: at, lastStatusCode: outcome.statusCode, lastError: null, claimedUntil: null })
          .where(eq(webhookDeliveries.id, delivery.id));
        await tx.update(webhookEndpoints).set({ consecutiveFailures: 0 }).where(eq(webhookEndpoints.id, endpoint.id));
        return;
      }
      const error = outcome.error ?? `HTTP ${outcome.statusCode}`;
      const gaveUp = delivery.attempts >= options.maxAttempts;
      const delay = Math.min(options.retryBaseMs * 2 ** Math.max(0, delivery.attempts - 1), options.retryMaxMs);
      await tx
        .update(webhookDeliveries)
        .set({ status: gaveUp ? "failed" : "pending", nextAttemptAt: new Date(at.getTime() + delay), lastStatusCode: outcome.statusCode, lastError: error, claimedUntil: null })
        .where(eq(webhookDeliveries.id, delivery.id));
      const [updated] = await tx
        .update(webhookEndpoints)
        .set({ consecutiveFailures: sql`${webhookEndpoints.consecutiveFailures} + 1` })
        .where(eq(webhookEndpoints.id, endpoint.id))
        .returning({ failures: webhookEndpoints.consecutiveFailures, enabled: webhookEndpoints.enabled });
      if (updated && updated.enabled && updated.failures >= options.maxConsecutiveFailures) {
        const reason = `${updated.failures} consecutive failed deliveries (last: ${error})`;
        await tx.update(webhookEndpoints).set({ enabled: false, disabledReason: reason }).where(eq(webhookEndpoints.id, endpoint.id));
        await recordAudit(tx, [{ actor: { kind: "system", id: "webhooks" }, action: "webhook.disabled", target: endpoint.id, detail: { reason } }], at);
        logger.warn({ endpointId: endpoint.id, reason }, "webhook endpoint disabled");
      }
    });
  }

  return {
    async register(actor, input) {
      const url = checkTargetUrl(input.url, options.allowLoopback); // HW-HOOK-3
      // The name is checked now as well; delivery checks the address it connects to again.
      await new Promise<void>((resolve, reject) =>
        guardedLookup(options.allowLoopback)(url.hostname.replace(/^\[|\]$/g, ""), {}, (error) => {
          if (error && (error as NodeJS.ErrnoException).code === "EHOOKTARGET") reject(new WebhookTargetError(`url: ${error.message}`, "url"));
          else resolve(); // an unresolvable name today is retried at delivery
        }),
      );
      const secret = `whsec_${randomBytes(24).toString("base64")}`;
      const at = new Date(now());
      const row: EndpointRow = {
        id: `whe_${randomBytes(9).toString("hex")}`,
        url: url.toString(),
        kinds: [...new Set(input.kinds)],
        secret,
        enabled: true,
        consecutiveFailures: 0,
        disabledReason: null,
        description: input.description ?? "",
        createdBy: actor,
        createdAt: at,
      };
      await db.transaction(async (tx) => {
        await tx.insert(webhookEndpoints).values(row);
        await recordAudit(tx, [{ actor, action: "webhook.register", target: row.id, detail: { url: row.url, kinds: row.kinds } }], at);
      });
      return { endpoint: endpointView(row), secret };
    },

    async list() {
      const rows = await db.select().from(webhookEndpoints).orderBy(asc(webhookEndpoints.createdAt), asc(webhookEndpoints.id));
      return rows.map(endpointView);
    },

    async remove(actor, id) {
      const at = new Date(now());
      await db.transaction(async (tx) => {
        const deleted = await tx.delete(webhookEndpoints).where(eq(webhookEndpoints.id, id)).returning({ id: webhookEndpoints.id });
        if (deleted.length === 0) throw new NotFoundError("webhook endpoint", id);
        await recordAudit(tx, [{ actor, action: "webhook.delete", target: id }], at);
      });
    },

    async deliveries(id, limit) {
      const [endpoint] = await db.select({ id: webhookEndpoints.id }).from(webhookEndpoints).where(eq(webhookEndpoints.id, id));
      if (!endpoint) throw new NotFoundError("webhook endpoint", id);
      const rows = await db
        .select()
        .from(webhookDeliveries)
        .where(eq(webhookDeliveries.endpointId, id))
        .orderBy(desc(webhookDeliveries.createdAt), desc(webhookDeliveries.eventId))
        .limit(limit);
      return rows.map(deliveryView);
    },

    async deliverDue() {
      const at = new Date(now());
      // HW-HOOK-2: claim with SKIP LOCKED, then mark the claim, so another plane skips these rows.
      const claimed = await db.transaction(async (tx) => {
        const due = await tx
          .select({ id: webhookDeliveries.id })
          .from(webhookDeliveries)
          .innerJoin(webhookEndpoints, eq(webhookEndpoints.id, webhookDeliveries.endpointId))
          .where(
            and(
              eq(webhookDeliveries.status, "pending"),
              eq(webhookEndpoints.enabled, true),
              lte(webhookDeliveries.nextAttemptAt, at),
              or(isNull(webhookDeliveries.claimedUntil), lte(webhookDeliveries.claimedUntil, at)),
            ),
          )
          .orderBy(asc(webhookDeliveries.nextAttemptAt), asc(webhookDeliveries.eventId))
          .limit(BATCH)
          .for("update", { of: webhookDeliveries, skipLocked: true });
        if (due.length === 0) return [];
        return tx
          .update(webhookDeliveries)
          .set({ claimedUntil: new Date(at.getTime() + 2 * options.timeoutMs), attempts: sql`${webhookDeliveries.attempts} + 1` })
          .where(inArray(webhookDeliveries.id, due.map((d) => d.id)))
          .returning();
      });
      // In event order per endpoint: one endpoint's deliveries go one at a time.
      const byEndpoint = new Map<string, DeliveryRow[]>();
      for (const row of claimed.sort((a, b) => a.eventId - b.eventId)) byEndpoint.set(row.endpointId, [...(byEndpoint.get(row.endpointId) ?? []), row]);
      await Promise.all(
        [...byEndpoint.values()].map(async (rows) => {
          for (const row of rows) await attempt(row).catch((error: unknown) => logger.error({ err: error, deliveryId: row.id }, "webhook attempt failed"));
        }),
      );
      return claimed.length;
    },
  };
}

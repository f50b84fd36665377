/**
 * `GET /api/v1/events/stream`: the operator event feed as server-sent events (WHATWG HTML "Server-sent events").
 *
 * HW-SSE-1: viewer role or higher (HW-HTTP-1, checked before anything is read); `deviceId` and `kind` filters are
 * validated (400 naming the field); `Last-Event-ID` (a non-negative integer, the `id` of the last event seen)
 * replays the committed events after it before the live ones, with no gap and no repeat; each client has a bounded
 * queue and is dropped when it overflows (control-plane/src/events/hub.ts).
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { deviceIdSchema } from "../../../../shared/protocol/index.js";
import { PLANE_EVENT_DATA, PLANE_EVENT_KINDS, type EventFilter, type EventHub, type PlaneEvent, type PlaneEventKind } from "../../events/index.js";
import type { ControlPlaneService } from "../../service/index.js";
import { CapacityError } from "../../errors.js";
import { errorBody } from "../errors.js";
import { errorSchema } from "../schemas.js";
import { errorResponses, json, securedRoute } from "../openapi.js";
import type { HttpEnv } from "../env.js";

const errors = errorResponses();

const kindList = z
  .string()
  .max(1024)
  .transform((value, ctx) => {
    const kinds = value.split(",").filter((k) => k !== "");
    for (const kind of kinds) {
      if (!(PLANE_EVENT_KINDS as readonly string[]).includes(kind)) {
        ctx.addIssue({ code: "custom", message: `unknown event kind ${JSON.stringify(kind)}; one of ${PLANE_EVENT_KINDS.join(", ")}` });
        return z.NEVER;
      }
    }
    return kinds as PlaneEventKind[];
  });

export const eventStreamQuery = z.object({
  deviceId: z.string().pipe(deviceIdSchema).optional(),
  /** Comma-separated event kinds. */
  kind: kindList.optional().openapi({ example: "appraisal.changed,device.quarantined" }),
});

/**
 * What each `data:` line (and each webhook body's `data`) carries, one shape per kind (control-plane/src/events/kinds.ts
 * PLANE_EVENT_DATA, the writers' types): documented in the OpenAPI document as `PlaneEvent`.
 */
export const planeEventSchema = z
  .discriminatedUnion(
    "kind",
    PLANE_EVENT_KINDS.map((kind) =>
      z.object({ id: z.number().int(), kind: z.literal(kind), deviceId: z.string().nullable(), at: z.string(), data: PLANE_EVENT_DATA[kind] }),
    ) as unknown as [z.ZodObject, ...z.ZodObject[]],
  )
  .openapi("PlaneEvent");

const LAST_EVENT_ID = /^(0|[1-9][0-9]{0,15})$/;

// The hub hands the same event object to every client: build its SSE frame once, not once per client. A frame is
// `id`, `event` and one `data` line: JSON.stringify escapes every line break, so the JSON is always one line.
const frames = new WeakMap<PlaneEvent, string>();
function frame(event: PlaneEvent): string {
  let text = frames.get(event);
  if (text === undefined) {
    text = `id: ${event.id}\nevent: ${event.kind}\ndata: ${JSON.stringify(event)}\n\n`;
    frames.set(event, text);
  }
  return text;
}

/** Events a client is sent in one write at most: a burst costs one TLS record and one syscall per batch, not per event. */
const MAX_EVENTS_PER_WRITE = 256;

export interface EventRoutesDeps {
  hub: EventHub;
  /** A `: keep-alive` comment this often, so idle proxies keep the connection (ms). Default 15,000. */
  keepAliveMs?: number;
}

export function registerEventRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, deps: EventRoutesDeps): void {
  const { hub } = deps;
  const keepAliveMs = deps.keepAliveMs ?? 15_000;
  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/events/stream",
      ...securedRoute(service, "viewer", "Live operator events (server-sent events), resumable with Last-Event-ID", "events"),
      request: { query: eventStreamQuery },
      responses: {
        200: {
          description: "text/event-stream: `id` (global event id), `event` (kind), `data` (the event as JSON, a `PlaneEvent`: its `data` shape depends on `kind`)",
          content: { "text/event-stream": { schema: planeEventSchema } },
        },
        ...errors,
        429: json(errorSchema, "Too many event streams open, in all or for this token (HW-SSE-1); retry after Retry-After seconds"),
      },
    }),
    (async (c: any) => {
      const query = c.req.valid("query") as z.infer<typeof eventStreamQuery>;
      const filter = { ...(query.deviceId === undefined ? {} : { deviceId: query.deviceId }), ...(query.kind === undefined ? {} : { kinds: query.kind }) };
      return eventStreamResponse(c, hub, filter, keepAliveMs, undefined, (c.get("principal") as { id: string }).id);
    }) as never,
  );
}

/**
 * Streams the events matching `filter` as server-sent events (HW-SSE-1): with a `Last-Event-ID` header (validated:
 * 400 naming it) first every committed event after it, then the live ones, none twice. Used by the API route above
 * and by the dashboard's cookie-authenticated stream (control-plane/src/ui), so both behave the same. `resumeFrom`
 * (validated like the header) is used when no header came. `holder` (the API token id) counts the stream against
 * that token's limit: too many open streams, in all or for the holder, is 429 with `Retry-After` (HW-SSE-1).
 */
export async function eventStreamResponse(c: Context, hub: EventHub, filter: EventFilter, keepAliveMs = 15_000, resumeFrom?: string, holder?: string): Promise<Response> {
  // A reconnecting EventSource sends Last-Event-ID; `resumeFrom` is where a page rendered at a known event starts.
  const header = c.req.header("last-event-id") ?? resumeFrom;
  let lastId: number | null = null;
  if (header !== undefined && header.trim() !== "") {
    if (!LAST_EVENT_ID.test(header.trim())) {
      return c.json(errorBody("validation_error", "header: last-event-id: must be a non-negative integer event id", "last-event-id"), 400);
    }
    lastId = Number(header.trim());
  }
  let subscription: Awaited<ReturnType<EventHub["subscribe"]>>;
  try {
    subscription = await hub.subscribe(filter, holder);
  } catch (error) {
    if (!(error instanceof CapacityError)) throw error;
    c.header("Retry-After", "5");
    return c.json(errorBody("too_many_requests", error.message), 429);
  }
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => subscription.close());
    let sent = lastId ?? subscription.startId;
    /** Writes the events not sent yet (ids only grow), in one write. */
    const send = async (events: readonly PlaneEvent[]) => {
      const fresh = events.filter((event) => event.id > sent);
      if (fresh.length === 0) return;
      await stream.write(fresh.map(frame).join(""));
      sent = fresh.at(-1)!.id;
    };
    // Replay what was committed between Last-Event-ID and the subscription's start, a page at a time.
    while (lastId !== null && sent < subscription.startId && !stream.aborted) {
      const page = await hub.replay(filter, sent, subscription.startId);
      if (page.length === 0) break;
      await send(page);
    }
    const keepAlive = setInterval(() => void stream.write(": keep-alive\n\n").catch(() => undefined), keepAliveMs);
    keepAlive.unref();
    try {
      for (;;) {
        const event = await subscription.next();
        if (event === null || stream.aborted) break;
        // What queued up meanwhile goes out with it.
        await send([event, ...subscription.drain(MAX_EVENTS_PER_WRITE - 1)]);
      }
    } finally {
      clearInterval(keepAlive);
      subscription.close();
    }
  });
}

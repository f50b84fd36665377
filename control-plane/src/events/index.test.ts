/**
 * The live event stream (`GET /api/v1/events/stream`) over the real services and database, PGlite and
 * PostgreSQL: what an operator's console sees when a device is quarantined and released.
 */
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url } from "../../../shared/crypto/index.js";
import type { Ack, Command } from "../../../shared/protocol/index.js";
import { onEveryDatabase, type TestDatabase } from "../db/test-postgres.js";
import { createHttpApp } from "../http/index.js";
import { createServices, type DevicePublisher, type Services } from "../service/index.js";
import { planeEvents } from "../db/index.js";
import { createEventHub, PLANE_EVENT_DATA, PLANE_EVENT_KINDS, type EventHub, type PlaneEventKind, recordPlaneEvents } from "./index.js";

const OPERATOR = { kind: "operator", id: "tok_test", role: "operator" } as const;

interface SseEvent {
  id: string;
  event: string;
  data: { id: number; kind: string; deviceId: string | null; data: Record<string, unknown> };
}

/** Reads server-sent events from a response body as they come. */
function sseReader(response: Response) {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const events: SseEvent[] = [];
  let ended = false;
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const fields = Object.fromEntries(block.split("\n").filter((l) => !l.startsWith(":") && l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trimStart()]));
        if (fields.data) {
          const data = JSON.parse(fields.data) as SseEvent["data"];
          // Every event the plane wrote has its kind's typed data (control-plane/src/events/kinds.ts).
          PLANE_EVENT_DATA[data.kind as PlaneEventKind].parse(data.data);
          events.push({ id: fields.id!, event: fields.event!, data });
        }
      }
    }
    ended = true;
  })();
  return {
    events,
    get ended() {
      return ended;
    },
    async cancel() {
      await reader.cancel().catch(() => undefined);
      await pump;
    },
  };
}

function contract(backend: string, open: () => Promise<TestDatabase>) {
  describe(`event stream (${backend})`, () => {
    let harness: TestDatabase;
    let services: Services;
    let hub: EventHub;
    let registry: Registry;
    let app: ReturnType<typeof createHttpApp>;
    let viewerToken: string;
    let clock = Date.UTC(2025, 5, 1);
    const publisher: DevicePublisher = { publish: async () => undefined, isConnected: () => true } as unknown as DevicePublisher;
    const commands: Command[] = [];
    const logger = pino({ level: "silent" });

    beforeAll(async () => {
      harness = await open();
      const recording: DevicePublisher = {
        async publish(_deviceId: string, kind: string, message: unknown) {
          if (kind === "command") commands.push(message as Command);
        },
        isConnected: () => true,
      } as unknown as DevicePublisher;
      void publisher;
      services = createServices({
        db: harness.db,
        publisher: recording,
        commandKey: generateKeyPair(),
        logger,
        now: () => clock,
        options: { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "off" },
      });
      registry = new Registry();
      // HW-SSE-2: the fallback poll is slow (a minute); the plane's own commits must wake the stream by themselves.
      hub = createEventHub({ db: harness.db, logger, registry, options: { pollIntervalMs: 60_000, maxQueuedPerClient: 5 } });
      app = createHttpApp({ service: services.service, logger, registry, version: "test", events: { hub, keepAliveMs: 60_000 } });
      viewerToken = (await services.service.createApiToken(OPERATOR, { role: "viewer", label: "console" })).token;
    });
    afterAll(async () => {
      await hub?.close();
      await services?.close();
      await harness?.close();
    });

    async function acceptedDevice() {
      const keys = generateKeyPair();
      const id = deviceIdFromPublicKey(keys.publicKey);
      const enroll = signObject(
        { v: 1 as const, type: "enroll" as const, deviceId: id, publicKey: toBase64Url(keys.publicKey), model: "S19", firmwareVersion: "1.0.0", agentVersion: "0.1.0", ts: clock },
        keys.privateKey,
      );
      await services.service.enroll(enroll as never);
      await services.service.acceptDevice(OPERATOR, id, "test");
      const ack = (command: Command): Ack =>
        signObject(
          {
            v: 1 as const,
            type: "ack" as const,
            deviceId: id,
            seq: command.seq,
            action: command.action,
            status: "done" as const,
            containment: command.action === "quarantine" ? ("quarantined" as const) : ("none" as const),
            ts: clock,
          },
          keys.privateKey,
        ) as Ack;
      return {
        id,
        /** A signed guard-alert event from the device, sent `times` times (a redelivery keeps its id). */
        async guardAlert(times = 1) {
          const event = signObject(
            { v: 1 as const, type: "event" as const, deviceId: id, id: `evt_${id.slice(3, 15)}`, ts: clock, kind: "guard-alert" as const, severity: "critical" as const, detail: { guard: "pools", subject: "cgminer.conf" } },
            keys.privateKey,
          );
          for (let i = 0; i < times; i++) await services.deviceSide.onEvent(event as never);
        },
        async heartbeat() {
          // HW-LIVE-1: signed by the device key for its connection.
          const session = { connectNonce: `conn-${id}`, publicKey: toBase64Url(keys.publicKey), lastHeartbeatSeq: -1 };
          const heartbeat = signObject({ v: 1 as const, type: "heartbeat" as const, deviceId: id, connectNonce: session.connectNonce, seq: 1, ts: clock, uptimeMs: 1000, containment: "none" as const, outboxDepth: 0 }, keys.privateKey);
          await services.deviceSide.onHeartbeat(heartbeat as never, session);
          await services.deviceSide.flush();
        },
        /** Quarantine, acked by the device: one `device.quarantined` event. */
        async quarantine() {
          await services.service.quarantine(OPERATOR, [id], "test");
          await services.deviceSide.onAck(ack(commands.filter((c) => c.deviceId === id).at(-1)!));
        },
        async release() {
          await services.service.release(OPERATOR, [id], "test");
          await services.deviceSide.onAck(ack(commands.filter((c) => c.deviceId === id).at(-1)!));
        },
      };
    }

    const stream = (query = "", headers: Record<string, string> = {}) =>
      app.request(`/api/v1/events/stream${query}`, { headers: { authorization: `Bearer ${viewerToken}`, ...headers } });

    it("documents the payload in the OpenAPI document: one typed data shape per event kind", async () => {
      const doc = (await (await app.request("/api/v1/openapi.json")).json()) as { components: { schemas: Record<string, { oneOf?: Array<{ properties: { kind: { const?: string; enum?: string[] } } }> }> } };
      const union = doc.components.schemas.PlaneEvent?.oneOf ?? [];
      expect(union.map((variant) => variant.properties.kind.const ?? variant.properties.kind.enum?.[0])).toEqual([...PLANE_EVENT_KINDS]);
    });

    it("HW-SSE-1: refuses a missing or unknown token (401) before reading anything", async () => {
      const none = await app.request("/api/v1/events/stream");
      expect(none.status).toBe(401);
      const unknown = await app.request("/api/v1/events/stream", { headers: { authorization: "Bearer hwa_nottoken" } });
      expect(unknown.status).toBe(401);
    });

    it("shows a device quarantined and released, live, as the device acks", async () => {
      const device = await acceptedDevice();
      const response = await stream(`?deviceId=${device.id}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toContain("text/event-stream");
      const sse = sseReader(response);
      await device.quarantine();
      await device.release();
      await vi.waitFor(() => expect(sse.events.map((e) => e.event)).toEqual(["device.quarantined", "device.released"]), { timeout: 10_000 });
      expect(sse.events[0]!.data).toMatchObject({ deviceId: device.id, kind: "device.quarantined", data: { from: "quarantine_requested", to: "quarantined" } });
      expect(Number(sse.events[1]!.id)).toBeGreaterThan(Number(sse.events[0]!.id));
      await sse.cancel();
    });

    it("shows a guard alert once (a redelivered event is not announced twice) and a device going stale", async () => {
      const device = await acceptedDevice();
      const sse = sseReader(await stream(`?deviceId=${device.id}`));
      await device.guardAlert(2);
      await device.heartbeat();
      clock += 200_000; // past staleAfterMs
      await services.deviceSide.markStaleDevices();
      await vi.waitFor(() => expect(sse.events.map((e) => e.event)).toEqual(["guard.alert", "device.stale"]), { timeout: 10_000 });
      expect(sse.events[0]!.data.data).toMatchObject({ severity: "critical", detail: { guard: "pools" } });
      expect(sse.events[1]!.data.data).toMatchObject({ machine: "appraisal", to: "stale" });
      await sse.cancel();
    });

    it("filters by device and kind, and refuses a bad filter or Last-Event-ID (400 naming it)", async () => {
      const a = await acceptedDevice();
      const b = await acceptedDevice();
      const onlyA = sseReader(await stream(`?deviceId=${a.id}`));
      const onlyReleased = sseReader(await stream(`?kind=device.released`));
      await a.quarantine();
      await b.quarantine();
      await b.release();
      await a.release();
      await vi.waitFor(() => expect(onlyA.events.map((e) => e.event)).toEqual(["device.quarantined", "device.released"]), { timeout: 10_000 });
      await vi.waitFor(() => expect(onlyReleased.events.map((e) => e.data.deviceId)).toEqual([b.id, a.id]), { timeout: 10_000 });
      expect(onlyA.events.every((e) => e.data.deviceId === a.id)).toBe(true);
      await onlyA.cancel();
      await onlyReleased.cancel();

      for (const [query, headers, field] of [
        ["?kind=device.exploded", {}, "kind"],
        ["?kind=appraisal.changed,nope", {}, "kind"],
        ["?deviceId=not a device", {}, "deviceId"],
        ["", { "last-event-id": "-1" }, "last-event-id"],
        ["", { "last-event-id": "abc" }, "last-event-id"],
      ] as const) {
        const refused = await stream(query, headers);
        expect(refused.status, query + JSON.stringify(headers)).toBe(400);
        const body = (await refused.json()) as { error: { code: string; field: string } };
        expect(body.error.code).toBe("validation_error");
        expect(body.error.field).toContain(field);
      }
    });

    it("resumes with Last-Event-ID: the events after it, then live ones, none twice and none missed", async () => {
      const device = await acceptedDevice();
      const first = sseReader(await stream(`?deviceId=${device.id}`));
      await device.quarantine();
      await vi.waitFor(() => expect(first.events).toHaveLength(1), { timeout: 10_000 });
      const lastSeen = first.events[0]!.id;
      await first.cancel(); // the console loses its connection ...
      await device.release(); // ... while the device is released and quarantined again
      await device.quarantine();
      const resumed = sseReader(await stream(`?deviceId=${device.id}`, { "last-event-id": lastSeen }));
      await vi.waitFor(() => expect(resumed.events.map((e) => e.event)).toEqual(["device.released", "device.quarantined"]), { timeout: 10_000 });
      await device.release(); // live after the replay
      await vi.waitFor(() => expect(resumed.events.map((e) => e.event)).toEqual(["device.released", "device.quarantined", "device.released"]), { timeout: 10_000 });
      const ids = resumed.events.map((e) => Number(e.id));
      expect(ids[0]).toBeGreaterThan(Number(lastSeen));
      expect([...ids].sort((x, y) => x - y)).toEqual(ids);
      expect(new Set(ids).size).toBe(ids.length);
      await resumed.cancel();
    });

    it.skipIf(backend !== "PostgreSQL")(
      "HW-SSE-2: two transactions committing out of order (lower id last): the stream carries both, in commit order, and a resume finds both",
      async () => {
        const deviceId = (await acceptedDevice()).id;
        const sse = sseReader(await stream(`?deviceId=${deviceId}`));
        let releaseFirst!: () => void;
        const firstMayCommit = new Promise<void>((resolve) => (releaseFirst = resolve));
        let firstInserted!: () => void;
        const firstHasInserted = new Promise<void>((resolve) => (firstInserted = resolve));
        // Transaction A takes the lower id, then stays open ...
        const first = harness.db.transaction(async (tx) => {
          const [id] = await recordPlaneEvents(tx, [{ kind: "guard.alert", deviceId, data: { eventId: "evt_A", severity: "warning", ts: clock, detail: {} } }], new Date(clock));
          firstInserted();
          await firstMayCommit;
          return id!;
        });
        await firstHasInserted;
        // ... while transaction B takes a higher id and commits first.
        const secondId = await harness.db.transaction(async (tx) => (await recordPlaneEvents(tx, [{ kind: "guard.alert", deviceId, data: { eventId: "evt_B", severity: "warning", ts: clock, detail: {} } }], new Date(clock)))[0]!);
        await vi.waitFor(() => expect(sse.events.map((e) => e.data.data.eventId)).toEqual(["evt_B"]), { timeout: 10_000 });
        releaseFirst();
        const firstId = await first;
        expect(firstId).toBeLessThan(secondId); // A's id is lower, yet it committed last
        await vi.waitFor(() => expect(sse.events.map((e) => e.data.data.eventId)).toEqual(["evt_B", "evt_A"]), { timeout: 10_000 });
        const [b, a] = sse.events.map((e) => Number(e.id));
        expect(a).toBeGreaterThan(b!); // the SSE id is the commit-ordered position
        await sse.cancel();
        // A client that saw nothing of these resumes from before B and gets both, in the same order.
        const resumed = sseReader(await stream(`?deviceId=${deviceId}`, { "last-event-id": String(b! - 1) }));
        await vi.waitFor(() => expect(resumed.events.map((e) => e.data.data.eventId)).toEqual(["evt_B", "evt_A"]), { timeout: 10_000 });
        await resumed.cancel();
        const rows = await harness.db.select({ id: planeEvents.id, position: planeEvents.position }).from(planeEvents);
        expect(rows.every((row) => row.position !== null)).toBe(true);
      },
    );

    it("HW-SSE-1: drops a client that does not read (bounded queue), counts it, and keeps serving the others", async () => {
      const devices = [];
      for (let i = 0; i < 4; i++) devices.push(await acceptedDevice());
      const slow = await stream(); // never read
      expect(slow.status).toBe(200);
      const reading = sseReader(await stream());
      const before = (await registry.getSingleMetric("hashward_sse_clients_dropped_total")!.get()).values[0]?.value ?? 0;
      for (const d of devices) {
        await d.quarantine();
        await d.release();
      }
      await vi.waitFor(async () => {
        const after = (await registry.getSingleMetric("hashward_sse_clients_dropped_total")!.get()).values[0]?.value ?? 0;
        expect(after).toBe(before + 1);
      }, { timeout: 10_000 });
      await vi.waitFor(() => expect(reading.events).toHaveLength(8), { timeout: 10_000 });
      // The dropped client's stream ends after what it was sent: it reconnects with Last-Event-ID.
      const dropped = sseReader(slow);
      await vi.waitFor(() => expect(dropped.ended).toBe(true), { timeout: 10_000 });
      expect(dropped.events.length).toBeLessThan(8);
      await reading.cancel();
    });

    it("HW-SSE-1: open streams are bounded per token and in all: one more is 429 with Retry-After, a closed one frees its place", async () => {
      const smallRegistry = new Registry();
      const small = createEventHub({ db: harness.db, logger, registry: smallRegistry, options: { pollIntervalMs: 60_000, maxSubscribers: 3, maxSubscribersPerHolder: 2 } });
      const smallApp = createHttpApp({ service: services.service, logger, registry: smallRegistry, version: "test", events: { hub: small, keepAliveMs: 60_000 } });
      const otherToken = (await services.service.createApiToken(OPERATOR, { role: "viewer", label: "second console" })).token;
      const open = (token: string) => smallApp.request("/api/v1/events/stream", { headers: { authorization: `Bearer ${token}` } });
      try {
        const first = [await open(viewerToken), await open(viewerToken)];
        expect(first.map((r) => r.status)).toEqual([200, 200]);
        const third = await open(viewerToken);
        expect(third.status).toBe(429);
        expect(third.headers.get("retry-after")).toBe("5");
        expect(((await third.json()) as { error: { message: string } }).error.message).toContain("2 open event streams");
        const other = await open(otherToken); // another token still gets one: 3 in all
        expect(other.status).toBe(200);
        const overTotal = await open(otherToken);
        expect(overTotal.status).toBe(429);
        expect(((await overTotal.json()) as { error: { message: string } }).error.message).toContain("too many event streams");
        const refused = (await smallRegistry.getSingleMetric("hashward_sse_clients_refused_total")!.get()).values;
        expect(Object.fromEntries(refused.map((v) => [v.labels.limit, v.value]))).toEqual({ holder: 1, total: 1 });
        // Closing a stream (the client goes away) gives its place back to that token.
        await first[0]!.body!.cancel();
        await vi.waitFor(async () => {
          const again = await open(viewerToken);
          expect(again.status).toBe(200);
          await again.body!.cancel();
        }, { timeout: 10_000 });
        await Promise.all([first[1]!.body!.cancel(), other.body!.cancel()]);
      } finally {
        await small.close();
      }
    });
  });
}

onEveryDatabase("event stream", contract);

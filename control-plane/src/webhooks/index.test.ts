/**
 * Webhooks over the real services and database (PGlite and PostgreSQL) with a real local HTTP receiver that
 * checks every Standard Webhooks signature.
 */
import { sql } from "drizzle-orm";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url } from "../../../shared/crypto/index.js";
import type { Ack, Command } from "../../../shared/protocol/index.js";
import { onEveryDatabase, type TestDatabase } from "../db/test-postgres.js";
import { createHttpApp } from "../http/index.js";
import { createServices, type DevicePublisher, type Services } from "../service/index.js";
import { startWebhookReceiver } from "../../../test/support/webhook-receiver.js";
import { createWebhookService, WebhookTargetError, type WebhookService } from "./index.js";

const ADMIN = { kind: "operator", id: "tok_admin", role: "admin" } as const;

function contract(backend: string, open: () => Promise<TestDatabase>) {
  describe(`webhooks (${backend})`, () => {
    let harness: TestDatabase;
    let services: Services;
    // Near the real time: receivers refuse a webhook-timestamp more than 5 minutes off (Standard Webhooks).
    let clock = Date.now();
    const commands: Command[] = [];
    const logger = pino({ level: "silent" });
    const webhooks = (options: Parameters<typeof createWebhookService>[0]["options"] = {}): WebhookService =>
      createWebhookService({ db: harness.db, logger, registry: new Registry(), now: () => clock, options: { allowLoopback: true, retryBaseMs: 1_000, timeoutMs: 5_000, ...options } });

    beforeAll(async () => {
      harness = await open();
      const publisher = {
        async publish(_d: string, kind: string, message: unknown) {
          if (kind === "command") commands.push(message as Command);
        },
        isConnected: () => true,
      } as unknown as DevicePublisher;
      services = createServices({
        db: harness.db,
        publisher,
        commandKey: generateKeyPair(),
        logger,
        now: () => clock,
        options: { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "off" },
      });
    });
    afterAll(async () => {
      await services?.close();
      await harness?.close();
    });

    async function quarantinedDevice(): Promise<string> {
      const keys = generateKeyPair();
      const id = deviceIdFromPublicKey(keys.publicKey);
      await services.service.enroll(
        signObject({ v: 1 as const, type: "enroll" as const, deviceId: id, publicKey: toBase64Url(keys.publicKey), model: "S19", firmwareVersion: "1.0.0", agentVersion: "0.1.0", ts: clock }, keys.privateKey) as never,
      );
      await services.service.acceptDevice(ADMIN, id, "test");
      await services.service.quarantine(ADMIN, [id], "test");
      const command = commands.filter((c) => c.deviceId === id).at(-1)!;
      const ack = signObject(
        { v: 1 as const, type: "ack" as const, deviceId: id, seq: command.seq, action: command.action, status: "done" as const, containment: "quarantined" as const, ts: clock },
        keys.privateKey,
      ) as Ack;
      await services.deviceSide.onAck(ack);
      return id;
    }

    async function count(table: string): Promise<number> {
      const result = await harness.db.execute(sql.raw(`select count(*)::int as n from ${table}`));
      return (result.rows[0] as { n: number }).n;
    }

    it("HW-HOOK-1/2: a signed delivery, retried with backoff after three failures, arrives once with one webhook-id", async () => {
      const rx = await startWebhookReceiver([500, 503, 500]);
      const service = webhooks();
      const { endpoint, secret } = await service.register(ADMIN, { url: rx.url, kinds: ["device.quarantined"] });
      expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
      rx.setSecret(secret);
      expect(JSON.stringify(await service.list())).not.toContain(secret); // shown once

      const deviceId = await quarantinedDevice();
      const delays: number[] = [];
      for (let attempt = 1; attempt <= 4; attempt++) {
        expect(await service.deliverDue()).toBe(1);
        expect(await service.deliverDue()).toBe(0); // not due again before its backoff
        const [log] = await service.deliveries(endpoint.id, 10);
        if (attempt < 4) {
          delays.push(Date.parse(log!.nextAttemptAt) - clock);
          clock = Date.parse(log!.nextAttemptAt);
        }
      }
      expect(delays).toEqual([1_000, 2_000, 4_000]); // exponential backoff
      expect(rx.received.map((r) => [r.verified, r.answered])).toEqual([[true, 500], [true, 503], [true, 500], [true, 200]]);
      expect(new Set(rx.received.map((r) => r.id)).size).toBe(1); // the same webhook-id on every retry
      expect(rx.received[3]!.body).toMatchObject({ type: "device.quarantined", data: { deviceId, to: "quarantined" } });
      const [log] = await service.deliveries(endpoint.id, 10);
      expect(log).toMatchObject({ status: "delivered", attempts: 4, lastStatusCode: 200, kind: "device.quarantined" });
      expect((await service.list())[0]).toMatchObject({ enabled: true, consecutiveFailures: 0 });
      expect(await service.deliverDue()).toBe(0);
      await service.remove(ADMIN, endpoint.id);
      await rx.close();
    });

    it("HW-HOOK-1: a receiver with another secret refuses the signature", async () => {
      const rx = await startWebhookReceiver();
      const service = webhooks({ maxAttempts: 1 });
      const { endpoint } = await service.register(ADMIN, { url: rx.url, kinds: ["device.quarantined"] });
      rx.setSecret(`whsec_${Buffer.alloc(24, 7).toString("base64")}`);
      await quarantinedDevice();
      await service.deliverDue();
      expect(rx.received.map((r) => r.verified)).toEqual([false]);
      expect((await service.deliveries(endpoint.id, 10))[0]).toMatchObject({ status: "failed", lastStatusCode: 401 });
      await service.remove(ADMIN, endpoint.id);
      await rx.close();
    });

    it("HW-HOOK-2: two planes sharing the database never send one delivery twice at once", async () => {
      const rx = await startWebhookReceiver();
      const a = webhooks();
      const b = webhooks();
      const { endpoint, secret } = await a.register(ADMIN, { url: rx.url, kinds: ["device.quarantined"] });
      rx.setSecret(secret);
      for (let i = 0; i < 5; i++) await quarantinedDevice();
      const [sentA, sentB] = await Promise.all([a.deliverDue(), b.deliverDue()]);
      expect(sentA + sentB).toBe(5);
      expect(rx.received).toHaveLength(5);
      expect(new Set(rx.received.map((r) => r.id)).size).toBe(5);
      await a.remove(ADMIN, endpoint.id);
      await rx.close();
    });

    it("disables an endpoint after N consecutive failures; its deliveries wait, logged", async () => {
      const rx = await startWebhookReceiver([500, 500, 500, 500]);
      const service = webhooks({ maxConsecutiveFailures: 2, retryBaseMs: 10 });
      const { endpoint, secret } = await service.register(ADMIN, { url: rx.url, kinds: ["device.quarantined"] });
      rx.setSecret(secret);
      await quarantinedDevice();
      await service.deliverDue();
      clock += 1_000;
      await service.deliverDue();
      clock += 1_000;
      expect(await service.deliverDue()).toBe(0);
      expect((await service.list()).find((e) => e.id === endpoint.id)).toMatchObject({ enabled: false, consecutiveFailures: 2 });
      expect((await service.list()).find((e) => e.id === endpoint.id)!.disabledReason).toContain("2 consecutive failed deliveries");
      expect(rx.received).toHaveLength(2);
      await service.remove(ADMIN, endpoint.id);
      await rx.close();
    });

    it("over the API: admins register (secret shown once), operators read the log, viewers neither; bad input 400", async () => {
      const service = webhooks({ allowLoopback: false });
      const app = createHttpApp({ service: services.service, logger, registry: new Registry(), version: "t", webhooks: service });
      const token = async (role: "viewer" | "operator" | "admin") => (await services.service.createApiToken(ADMIN, { role, label: role })).token;
      const [viewer, operator, admin] = [await token("viewer"), await token("operator"), await token("admin")];
      const call = (method: string, path: string, bearer?: string, body?: unknown) =>
        app.request(path, {
          method,
          headers: { ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...(body ? { "content-type": "application/json" } : {}) },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
      const body = { url: "https://hooks.example.net/hashward", kinds: ["device.quarantined", "guard.alert"] };
      const before = await count("webhook_endpoints");
      expect((await call("POST", "/api/v1/webhooks", undefined, body)).status).toBe(401);
      expect((await call("POST", "/api/v1/webhooks", operator, body)).status).toBe(403);
      expect((await call("GET", "/api/v1/webhooks", viewer)).status).toBe(403);
      for (const [bad, field] of [
        [{ ...body, url: "http://169.254.169.254/latest" }, "url"],
        [{ ...body, kinds: ["device.exploded"] }, "kinds"],
        [{ ...body, kinds: [] }, "kinds"],
        [{ ...body, extra: 1 }, ""],
      ] as const) {
        const refused = await call("POST", "/api/v1/webhooks", admin, bad);
        expect(refused.status, JSON.stringify(bad)).toBe(400);
        expect(((await refused.json()) as { error: { field?: string } }).error.field ?? "").toContain(field);
      }
      expect(await count("webhook_endpoints")).toBe(before);
      const created = await call("POST", "/api/v1/webhooks", admin, body);
      expect(created.status).toBe(201);
      const { endpoint, secret } = (await created.json()) as { endpoint: { id: string }; secret: string };
      const listed = await call("GET", "/api/v1/webhooks", operator);
      expect(listed.status).toBe(200);
      expect(await listed.text()).not.toContain(secret);
      expect((await call("GET", `/api/v1/webhooks/${endpoint.id}/deliveries`, operator)).status).toBe(200);
      expect((await call("GET", "/api/v1/webhooks/whe_000000000000000000/deliveries", operator)).status).toBe(404);
      expect((await call("DELETE", `/api/v1/webhooks/${endpoint.id}`, operator)).status).toBe(403);
      expect((await call("DELETE", `/api/v1/webhooks/${endpoint.id}`, admin)).status).toBe(200);
    });

    it("HW-HOOK-3: refuses loopback and link-local targets, literal or named, at registration; nothing written", async () => {
      const service = webhooks({ allowLoopback: false });
      const before = await count("webhook_endpoints");
      for (const url of [
        "http://127.0.0.1:9/x",
        "http://127.1.2.3/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/x",
        "http://0.0.0.0/x",
        "http://localhost:8080/x",
        "http://a.localhost/x",
        "ftp://example.com/x",
        "http://user:pw@example.com/x",
        "not a url",
      ]) {
        await expect(service.register(ADMIN, { url, kinds: ["guard.alert"] }), url).rejects.toBeInstanceOf(WebhookTargetError);
      }
      expect(await count("webhook_endpoints")).toBe(before);
    });

    it("HW-HOOK-3: checks the address again at delivery, so a loopback target allowed before is refused", async () => {
      const rx = await startWebhookReceiver();
      const lenient = webhooks({ allowLoopback: true });
      const byName = await lenient.register(ADMIN, { url: rx.url.replace("127.0.0.1", "localhost"), kinds: ["device.quarantined"] });
      const byAddress = await lenient.register(ADMIN, { url: rx.url, kinds: ["device.quarantined"] });
      await quarantinedDevice();
      const strict = webhooks({ allowLoopback: false, maxAttempts: 1 });
      await strict.deliverDue();
      expect(rx.received).toHaveLength(0);
      for (const { endpoint } of [byName, byAddress]) {
        expect((await strict.deliveries(endpoint.id, 10))[0]!.lastError).toContain("loopback or link-local");
        await strict.remove(ADMIN, endpoint.id);
      }
      await rx.close();
    });
  });
}

onEveryDatabase("webhooks", contract);

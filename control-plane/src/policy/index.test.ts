/**
 * Policy service contract on PGlite (always) and PostgreSQL (HASHWARD_TEST_DATABASE_URL): storage, scoping,
 * validation, bulk delivery as signed set-policy commands, delivery on hello, acked versions.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url } from "../../../shared/crypto/index.js";
import { ValidationError } from "../../../shared/errors/index.js";
import { type Ack, type Challenge, type Command, type Hello, verifyCommand } from "../../../shared/protocol/index.js";
import type { Database } from "../db/index.js";
import { onEveryDatabase } from "../db/test-postgres.js";
import { ConflictError, LivenessRefusal, NotFoundError } from "../errors.js";
import { createServices, type DevicePublisher, type DeviceSession, type DeviceSideService, type ServiceOptions, type Services } from "../service/index.js";
import { BUILT_IN_INDICATORS, createPolicyService, type PolicyService, setPolicyParamsSchema, policyDeliveryHooks } from "./index.js";

const OPERATOR = { kind: "operator", id: "tok_test", role: "operator" } as const;
const OPTIONS: ServiceOptions = { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "contraindicated" };
const POOL = "stratum+tcp://pool.example.com:3333";
const BACKUP = "stratum+ssl://backup.example.com:443";

class RecordingPublisher implements DevicePublisher {
  connected = new Set<string>();
  sent: Array<{ deviceId: string; kind: "challenge" | "command"; message: Challenge | Command }> = [];
  async publish(deviceId: string, kind: "challenge" | "command", message: Challenge | Command): Promise<void> {
    this.sent.push({ deviceId, kind, message });
  }
  isConnected(deviceId: string): boolean {
    return this.connected.has(deviceId);
  }
  policies(deviceId: string): Command[] {
    return this.sent.filter((s) => s.deviceId === deviceId && s.kind === "command" && (s.message as Command).action === "set-policy").map((s) => s.message as Command);
  }
}

function contract(name: string, open: () => Promise<{ db: Database; close(): Promise<void> }>) {
  describe(`PolicyService (${name})`, () => {
    let harness: { db: Database; close(): Promise<void> };
    let services: Services;
    let policy: PolicyService;
    let deviceSide: DeviceSideService;
    const clock = Date.UTC(2025, 5, 1);
    const publisher = new RecordingPublisher();
    const commandKey = generateKeyPair();
    const logger = pino({ level: "silent" });

    beforeAll(async () => {
      harness = await open();
      const deps = { db: harness.db, publisher, commandKey, logger, now: () => clock, options: OPTIONS };
      policy = createPolicyService(deps);
      // The hooks the plane registers (control-plane/src/plane): the device side itself delivers policies.
      services = createServices({ ...deps, hooks: policyDeliveryHooks(policy) });
      deviceSide = services.deviceSide;
    });
    afterAll(async () => {
      await services?.close();
      await harness?.close();
    });

    async function device(model: string, accept = true) {
      const keys = generateKeyPair();
      const id = deviceIdFromPublicKey(keys.publicKey);
      const request = signObject(
        { v: 1 as const, type: "enroll" as const, deviceId: id, publicKey: toBase64Url(keys.publicKey), model, firmwareVersion: "1.0.0", agentVersion: "0.1.0", ts: clock },
        keys.privateKey,
      );
      await services.service.enroll(request);
      if (accept) await services.service.acceptDevice(OPERATOR, id, "test");
      publisher.connected.add(id);
      // HW-LIVE-1: the hello is signed and bound to the connection it arrives on.
      const session: DeviceSession = { connectNonce: randomBytes(16).toString("base64url"), publicKey: toBase64Url(keys.publicKey), lastHeartbeatSeq: -1 };
      const helloBody = { v: 1 as const, type: "hello" as const, deviceId: id, connectNonce: session.connectNonce, model, firmwareVersion: "1.0.0", agentVersion: "0.1.0", bootId: "b1", containment: "none" as const, lastCommandSeq: 0, ts: clock };
      const hello = signObject(helloBody, keys.privateKey) as Hello;
      const forgedHello = signObject(helloBody, generateKeyPair().privateKey) as Hello;
      const ack = (command: Command, status: "done" | "failed" = "done", reason?: string): Ack =>
        signObject(
          { v: 1 as const, type: "ack" as const, deviceId: id, seq: command.seq, action: command.action, status, containment: "none" as const, ...(reason ? { reason } : {}), ts: clock },
          keys.privateKey,
        ) as Ack;
      return { id, hello, forgedHello, session, ack };
    }

    function expectValidPolicyCommand(command: Command | undefined, deviceId: string) {
      expect(command).toBeDefined();
      verifyCommand(command!, commandKey.publicKey, { deviceId, lastSeq: command!.seq - 1, nowMs: clock });
      return setPolicyParamsSchema.parse(command!.params).policy;
    }

    it("refuses invalid policies naming the field, storing nothing", async () => {
      const cases: Array<[string, string, unknown, string]> = [
        ["pools", "http url", { allowedUrls: ["http://pool.example.com:80"] }, "allowedUrls.0"],
        ["pools", "no port", { allowedUrls: ["stratum+tcp://pool.example.com"] }, "allowedUrls.0"],
        ["pools", "credentials", { allowedUrls: ["stratum+tcp://me:pw@pool.example.com:3333"] }, "allowedUrls.0"],
        ["pools", "no url", { allowedUrls: [] }, "allowedUrls"],
        ["pools", "no scheme", { allowedUrls: [POOL, "pool.example.com:3333"] }, "allowedUrls.1"],
        ["pools", "other fragment", { allowedUrls: ["stratum+tcp://pool.example.com:3333#frag"] }, "allowedUrls.0"],
        ["pools", "query", { allowedUrls: ["stratum+tcp://pool.example.com:3333?x=1"] }, "allowedUrls.0"],
        ["pools", "port wildcard without host", { allowedUrls: ["stratum+tcp://:*"] }, "allowedUrls.0"],
        ["pools", "port range", { allowedUrls: ["stratum+tcp://pool.example.com:3000-4000"] }, "allowedUrls.0"],
        ["pools", "unanchored", { allowedUrls: [POOL], workerPatterns: ["farm\\.rig\\d+"] }, "workerPatterns.0"],
        ["pools", "escaped $", { allowedUrls: [POOL], workerPatterns: ["^farm\\$"] }, "workerPatterns.0"],
        ["pools", "bad regex", { allowedUrls: [POOL], workerPatterns: ["^farm(\\.rig$"] }, "workerPatterns.0"],
        ["pools", "unknown key", { allowedUrls: [POOL], extra: 1 }, "extra"],
        ["pools", "both scopes", { scope: { model: "S19", deviceIds: ["hw-000000000000000000000000"] }, allowedUrls: [POOL] }, "scope.deviceIds"],
        ["pools", "bad device id", { scope: { deviceIds: ["nope"] }, allowedUrls: [POOL] }, "scope.deviceIds.0"],
        ["network", "bad host", { allowedHosts: ["exa mple.com"] }, "allowedHosts.0"],
        ["network", "bad port", { allowedHosts: ["ntp.example.com:70000"] }, "allowedHosts.0"],
        ["indicators", "no path", { indicators: [{ id: "x", kind: "file-present", severity: "critical", description: "d" }] }, "indicators.0.path"],
        ["indicators", "no pattern", { indicators: [{ id: "x", kind: "hosts-entry", severity: "warning", description: "d" }] }, "indicators.0.pattern"],
        ["indicators", "paths on a file indicator", { indicators: [{ id: "x", kind: "file-present", path: "/a", paths: ["/b"], severity: "warning", description: "d" }] }, "indicators.0.paths"],
        ["indicators", "bad digest", { indicators: [{ id: "x", kind: "unexpected-executable", paths: ["/tmp"], allowedSha256: ["ABC"], severity: "warning", description: "d" }] }, "indicators.0.allowedSha256.0"],
        ["indicators", "no path nor paths", { indicators: [{ id: "x", kind: "unexpected-executable", allowReferenceValues: true, severity: "warning", description: "d" }] }, "indicators.0.path"],
        // the kinds of HW-GUARD-9 and the Hive OS markers: each field only where it means something
        ["indicators", "named-file without pattern", { indicators: [{ id: "x", kind: "named-file", paths: ["/config"], severity: "critical", description: "d" }] }, "indicators.0.pattern"],
        ["indicators", "named-file without path", { indicators: [{ id: "x", kind: "named-file", pattern: "bNminer\\.conf", severity: "critical", description: "d" }] }, "indicators.0.path"],
        ["indicators", "file-size-above without maxBytes", { indicators: [{ id: "x", kind: "file-size-above", path: "/usr/bin/ntpd", severity: "warning", description: "d" }] }, "indicators.0.maxBytes"],
        ["indicators", "negative maxBytes", { indicators: [{ id: "x", kind: "file-size-above", path: "/usr/bin/ntpd", maxBytes: -1, severity: "warning", description: "d" }] }, "indicators.0.maxBytes"],
        ["indicators", "maxBytes on a file indicator", { indicators: [{ id: "x", kind: "file-present", path: "/a", maxBytes: 1, severity: "warning", description: "d" }] }, "indicators.0.maxBytes"],
        ["indicators", "maxDepth on a file indicator", { indicators: [{ id: "x", kind: "file-present", path: "/a", maxDepth: 1, severity: "warning", description: "d" }] }, "indicators.0.maxDepth"],
        ["indicators", "maxDepth over the cap", { indicators: [{ id: "x", kind: "unexpected-executable", path: "/tmp", maxDepth: 9, severity: "warning", description: "d" }] }, "indicators.0.maxDepth"],
        ["indicators", "presentSeverity on a file indicator", { indicators: [{ id: "x", kind: "file-present", path: "/a", presentSeverity: "warning", severity: "critical", description: "d" }] }, "indicators.0.presentSeverity"],
        [
          "indicators",
          "duplicate id",
          { indicators: [BUILT_IN_INDICATORS[0], { ...BUILT_IN_INDICATORS[1], id: BUILT_IN_INDICATORS[0]!.id }] },
          "indicators.1.id",
        ],
      ];
      for (const [kind, label, input, field] of cases) {
        const error = await policy.putPolicy(OPERATOR, kind as "pools", input as never).catch((e: unknown) => e);
        expect(error, label).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).field, label).toBe(field);
      }
      for (const kind of ["pools", "network", "indicators"] as const) expect((await policy.listPolicies(kind)).policies).toEqual([]);
    });

    it("accepts stratum V1/V2 URLs, NiceHash #xnsub, any port on a host (:*), anchored worker patterns, hosts with ports and IPv6", async () => {
      const pools = await policy.putPolicy(OPERATOR, "pools", {
        scope: { model: "validation-only" },
        allowedUrls: [
          POOL,
          BACKUP,
          "stratum2+tcp://v2.example.com:3336/9bDuixKmZqAJnrmP746n8zU1wyAQRrus7th9dxnkPg6RzQvCnan",
          "stratum+tcp://sha256.eu.nicehash.com:9200#xnsub",
          "stratum+tcp://rental.example.com:*",
        ],
        workerPatterns: ["^farm1\\.rig[0-9]{1,4}$"],
      });
      expect(pools.policy).toMatchObject({ kind: "pools", scope: { model: "validation-only" }, workerPatterns: ["^farm1\\.rig[0-9]{1,4}$"] });
      const network = await policy.putPolicy(OPERATOR, "network", { scope: { model: "validation-only" }, allowedHosts: ["ntp.example.com", "10.0.0.5:123", "[2001:db8::1]:53", "2001:db8::2"] });
      expect(network.policy.version).toBeGreaterThan(pools.policy.version);
      expect(pools.delivery).toEqual({ version: null, devices: 0 });
    });

    it("sends no policy before a pool policy applies (the agent would flag every pool)", async () => {
      const d = await device("S17");
      publisher.sent.length = 0;
      await policy.putPolicy(OPERATOR, "network", { allowedHosts: ["ntp.example.com"] });
      await deviceSide.onHello(d.hello, d.session);
      expect(publisher.policies(d.id)).toEqual([]);
      expect(await policy.devicePolicy(d.id)).toMatchObject({ deliverable: false, delivered: null, policy: { pools: null, network: { allowedHosts: ["ntp.example.com"] } } });
      expect((await policy.listPolicies("pools")).builtInDefault).toBeNull();
      await policy.deletePolicy(OPERATOR, "network", (await policy.listPolicies("network")).policies[0]!.id);
    });

    it("delivers a fleet default to every accepted device as a signed set-policy, in one change", async () => {
      const a = await device("S19");
      const b = await device("S19j");
      const pending = await device("S19", false);
      const change = await policy.putPolicy(OPERATOR, "pools", { allowedUrls: [POOL], workerPatterns: ["^farm\\..+$"] });
      expect(change.delivery.version).toBe(change.policy.version);
      expect(change.delivery.devices).toBeGreaterThanOrEqual(2);
      for (const d of [a, b]) {
        const params = expectValidPolicyCommand(publisher.policies(d.id).at(-1), d.id);
        expect(params).toEqual({
          version: change.policy.version,
          pools: { allowedUrls: [POOL], workerPatterns: ["^farm\\..+$"] },
          network: { allowedHosts: [] },
          // no approved reference values: the built-in scan that needs them is left out (HW-GUARD-8)
          indicators: BUILT_IN_INDICATORS.filter((i) => !i.allowReferenceValues),
        });
      }
      expect(publisher.policies(pending.id)).toEqual([]);
      const audit = await services.service.listAudit(200, 0);
      expect(audit.find((e) => e.action === "policy.pools.put" && e.target === change.policy.id)?.actor).toEqual(OPERATOR);
      expect(audit.filter((e) => e.action === "command.set-policy" && e.target === a.id)).toHaveLength(1);

      const view = await policy.devicePolicy(a.id);
      expect(view).toMatchObject({
        deviceId: a.id,
        sources: { pools: { level: "default", policyId: change.policy.id }, indicators: { level: "built-in", policyId: null } },
        delivered: { version: change.policy.version, current: true },
        acked: null,
        upToDate: false,
      });
      await expect(policy.devicePolicy("hw-ffffffffffffffffffffffff")).rejects.toBeInstanceOf(NotFoundError);
    });

    it("applies the most specific scope: device group > model > default; unaffected devices get nothing", async () => {
      const plain = await device("T21");
      const modelled = await device("S21");
      const grouped = await device("S21");
      await policy.putPolicy(OPERATOR, "pools", { allowedUrls: [POOL] });
      const byModel = await policy.putPolicy(OPERATOR, "pools", { scope: { model: "S21" }, allowedUrls: [BACKUP] });
      expect(byModel.delivery.devices).toBe(2);
      const group = await policy.putPolicy(OPERATOR, "pools", { scope: { deviceIds: [grouped.id, grouped.id] }, allowedUrls: [POOL, BACKUP] });
      expect(group.policy.scope).toEqual({ deviceIds: [grouped.id] });
      expect(group.delivery.devices).toBe(1);
      expect(expectValidPolicyCommand(publisher.policies(grouped.id).at(-1), grouped.id).pools.allowedUrls).toEqual([POOL, BACKUP]);
      expect(expectValidPolicyCommand(publisher.policies(modelled.id).at(-1), modelled.id).pools.allowedUrls).toEqual([BACKUP]);
      expect(expectValidPolicyCommand(publisher.policies(plain.id).at(-1), plain.id).pools.allowedUrls).toEqual([POOL]);
      expect((await policy.devicePolicy(grouped.id)).sources.pools).toEqual({ level: "devices", policyId: group.policy.id, version: group.policy.version });

      // Re-saving the same content is audited and versioned, but no device's policy changed: nothing is sent.
      const before = publisher.sent.length;
      const again = await policy.putPolicy(OPERATOR, "pools", { scope: { model: "S21" }, allowedUrls: [BACKUP] });
      expect(again.policy.id).toBe(byModel.policy.id);
      expect(again.policy.version).toBeGreaterThan(group.policy.version);
      expect(again.delivery).toEqual({ version: null, devices: 0 });
      expect(publisher.sent.length).toBe(before);

      // Overlapping groups are refused; deleting the group falls the device back to its model's policy.
      await expect(policy.putPolicy(OPERATOR, "pools", { scope: { deviceIds: [grouped.id, plain.id] }, allowedUrls: [POOL] })).rejects.toBeInstanceOf(ConflictError);
      const removed = await policy.deletePolicy(OPERATOR, "pools", group.policy.id);
      expect(removed.delivery.devices).toBe(1);
      expect(removed.delivery.version).toBeGreaterThan(again.policy.version);
      const fallback = expectValidPolicyCommand(publisher.policies(grouped.id).at(-1), grouped.id);
      expect(fallback).toMatchObject({ version: removed.delivery.version, pools: { allowedUrls: [BACKUP] } });
      await expect(policy.deletePolicy(OPERATOR, "pools", group.policy.id)).rejects.toBeInstanceOf(NotFoundError);
      await expect(policy.deletePolicy(OPERATOR, "network", byModel.policy.id)).rejects.toBeInstanceOf(NotFoundError);

      // The fleet default is the only pool policy of some devices: deleting it would leave them with a stale one.
      const fleet = (await policy.listPolicies("pools")).policies[0]!;
      await expect(policy.deletePolicy(OPERATOR, "pools", fleet.id)).rejects.toBeInstanceOf(ConflictError);
      const list = await policy.listPolicies("pools");
      expect(list.policies.map((p) => p.scope)).toEqual([{}, { model: "S21" }, { model: "validation-only" }]);
      expect((await policy.listPolicies("indicators")).builtInDefault).toEqual({ indicators: [...BUILT_IN_INDICATORS] });
    });

    it("supersedes an unacknowledged older set-policy with the newer one", async () => {
      const d = await device("L9");
      await policy.putPolicy(OPERATOR, "network", { scope: { model: "L9" }, allowedHosts: ["ntp.example.com"] });
      await policy.putPolicy(OPERATOR, "network", { scope: { model: "L9" }, allowedHosts: ["ntp.example.com", "10.0.0.1"] });
      const commands = await services.service.listCommands(d.id, 10);
      const setPolicies = commands.filter((c) => c.action === "set-policy");
      expect(setPolicies.map((c) => c.status)).toEqual(["pending", "superseded"]);
    });

    it("sends the policy on hello before the challenge, records the ack, and re-sends only when due", async () => {
      const d = await device("KS5");
      publisher.sent.length = 0;
      // HW-LIVE-1: a hello not signed by the device issues nothing (no set-policy, no challenge).
      await expect(deviceSide.onHello(d.forgedHello, d.session)).rejects.toBeInstanceOf(LivenessRefusal);
      expect(publisher.sent).toEqual([]);
      expect(await policy.devicePolicy(d.id)).toMatchObject({ delivered: null });
      await deviceSide.onHello(d.hello, d.session);
      const kinds = publisher.sent.filter((s) => s.deviceId === d.id).map((s) => (s.kind === "command" ? (s.message as Command).action : s.kind));
      expect(kinds).toEqual(["set-policy", "challenge"]);
      const first = publisher.policies(d.id)[0] as Command;
      const params = expectValidPolicyCommand(first, d.id);

      // Pending and unexpired: a second hello re-publishes the same command, it does not issue another.
      publisher.sent.length = 0;
      await deviceSide.onHello(d.hello, d.session);
      expect(publisher.policies(d.id)).toEqual([first]);

      await deviceSide.onAck(d.ack(first));
      let view = await policy.devicePolicy(d.id);
      expect(view).toMatchObject({ acked: { version: params.version }, upToDate: true, lastFailure: null });
      publisher.sent.length = 0;
      await deviceSide.onHello(d.hello, d.session);
      expect(publisher.policies(d.id)).toEqual([]);

      // A failed ack (e.g. "stale policy version") is recorded; the next hello sends a higher version.
      await policy.putPolicy(OPERATOR, "indicators", { scope: { model: "KS5" }, indicators: [BUILT_IN_INDICATORS[0]!] });
      const second = publisher.policies(d.id).at(-1) as Command;
      await deviceSide.onAck(d.ack(second, "failed", "stale policy version"));
      view = await policy.devicePolicy(d.id);
      expect(view).toMatchObject({ acked: { version: params.version }, upToDate: false, lastFailure: expect.stringContaining("stale policy version") });
      publisher.sent.length = 0;
      await deviceSide.onHello(d.hello, d.session);
      const third = publisher.policies(d.id)[0] as Command;
      const thirdParams = expectValidPolicyCommand(third, d.id);
      expect(thirdParams.version).toBeGreaterThan((second.params as { policy: { version: number } }).policy.version);
      expect(thirdParams.indicators.map((i) => i.id)).toEqual([BUILT_IN_INDICATORS[0]!.id]);
      await deviceSide.onAck(d.ack(third));
      expect(await policy.devicePolicy(d.id)).toMatchObject({ acked: { version: thirdParams.version }, upToDate: true, lastFailure: null });
    });

    it("delivers one change to 1,000 devices of a model in one transaction", async () => {
      const ids = Array.from({ length: 1000 }, () => deviceIdFromPublicKey(generateKeyPair().publicKey));
      const t = new Date(clock).toISOString();
      for (let i = 0; i < ids.length; i += 500) {
        await harness.db.execute(
          sql`insert into devices (id, public_key, model, enrollment, created_at, updated_at) values ${sql.join(
            ids.slice(i, i + 500).map((id) => sql`(${id}, ${id}, ${"bulk-policy"}, ${"accepted"}, ${t}::timestamptz, ${t}::timestamptz)`),
            sql`, `,
          )}`,
        );
      }
      const change = await policy.putPolicy(OPERATOR, "pools", { scope: { model: "bulk-policy" }, allowedUrls: [BACKUP] });
      expect(change.delivery).toEqual({ version: change.policy.version, devices: 1000 });
      const commands = await harness.db.execute(sql`select count(*)::int as n from commands where action = 'set-policy' and status = 'pending' and device_id in (select id from devices where model = 'bulk-policy')`);
      expect((commands.rows[0] as { n: number }).n).toBe(1000);
      const view = await policy.devicePolicy(ids[999]!);
      expect(view).toMatchObject({ delivered: { version: change.policy.version, seq: 1, current: true }, sources: { pools: { level: "model" } } });
    });

    it("HW-GUARD-8: an unexpected-executable indicator gets the device's approved reference digests; without them it is left out", async () => {
      const withRef = await device("S21-ref");
      const withoutRef = await device("S21-noref");
      const digest = (c: string) => c.repeat(64);
      await services.service.registerReferenceValues(OPERATOR, {
        model: "S21-ref",
        firmwareVersion: "1.0.0",
        measurements: [
          { path: "/usr/bin/bmminer", sha256: digest("b"), size: 10 },
          { path: "/usr/bin/busybox", sha256: digest("a"), size: 20 },
          { path: "/etc/removed", sha256: "", size: 0 },
        ],
      });
      const scope = { deviceIds: [withRef.id, withoutRef.id] };
      await policy.putPolicy(OPERATOR, "pools", { scope, allowedUrls: [POOL] });
      const executables = {
        id: "not-in-reference",
        kind: "unexpected-executable" as const,
        paths: ["/usr/bin", "/tmp", "/config"],
        allowReferenceValues: true,
        allowedSha256: [digest("c")],
        severity: "critical" as const,
        description: "an executable the approved reference values do not name",
      };
      await policy.putPolicy(OPERATOR, "indicators", { scope, indicators: [BUILT_IN_INDICATORS[0]!, executables] });
      const sent = expectValidPolicyCommand(publisher.policies(withRef.id).at(-1), withRef.id);
      expect(sent.indicators.find((i) => i.id === "not-in-reference")).toEqual({ ...executables, allowedSha256: [digest("a"), digest("b"), digest("c")] });
      const other = expectValidPolicyCommand(publisher.policies(withoutRef.id).at(-1), withoutRef.id);
      expect(other.indicators.map((i) => i.id)).toEqual([BUILT_IN_INDICATORS[0]!.id]);
      expect((await policy.devicePolicy(withRef.id)).policy.indicators.find((i) => i.id === "not-in-reference")?.allowedSha256).toHaveLength(3);
      // reference values approved later: the device's next hello brings the indicator
      await deviceSide.onAck(withoutRef.ack(publisher.policies(withoutRef.id).at(-1)!));
      await services.service.registerReferenceValues(OPERATOR, { model: "S21-noref", firmwareVersion: "1.0.0", measurements: [{ path: "/usr/bin/bmminer", sha256: digest("d"), size: 10 }] });
      expect(await policy.deliverOnHello(withoutRef.id)).toBe(true);
      const later = expectValidPolicyCommand(await lastPolicyCommand(withoutRef.id), withoutRef.id); // issued, published by the hello handler
      expect(later.indicators.find((i) => i.id === "not-in-reference")?.allowedSha256).toEqual([digest("c"), digest("d")]);
    });

    async function lastPolicyCommand(deviceId: string): Promise<Command> {
      const rows = await harness.db.execute(sql`select payload from commands where device_id = ${deviceId} and action = 'set-policy' order by seq desc limit 1`);
      return (rows.rows[0] as { payload: Command }).payload;
    }

    it("sends nothing on hello from a device that is not accepted", async () => {
      const d = await device("S9", false);
      publisher.sent.length = 0;
      expect(await policy.deliverOnHello(d.id)).toBe(false);
      await deviceSide.onHello(d.hello, d.session);
      expect(publisher.sent).toEqual([]);
    });
  });
}

onEveryDatabase("PolicyService", contract);

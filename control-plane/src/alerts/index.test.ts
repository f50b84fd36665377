/**
 * Farm alerts on the plane over the real services and database (PGlite, and PostgreSQL when
 * HASHWARD_TEST_DATABASE_URL is set): each alert is a finding with its evidence in the device's attestation result
 * and history, a `farm.alert` event and an audit row (HW-ALERT-1, HW-ALERT-2); thresholds come from the
 * `farm-alerts` policy (HW-ALERT-3); the heartbeat path does not wait for the write (HW-ALERT-4).
 */
import { randomBytes } from "node:crypto";
import { and, eq } from "drizzle-orm";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url } from "../../../shared/crypto/index.js";
import type { Command, Evidence, Heartbeat } from "../../../shared/protocol/index.js";
import { auditLog, planeEvents, policies as policiesTable } from "../db/index.js";
import { onEveryDatabase, type TestDatabase } from "../db/test-postgres.js";
import { createPolicyService, type PolicyService } from "../policy/index.js";
import { type AttestationResult, createServices, type DevicePublisher, type DeviceSession, type DeviceSideService, type Services } from "../service/index.js";
import { createFarmAlerts, type FarmAlerts } from "./index.js";

const OPERATOR = { kind: "operator", id: "tok_test", role: "operator" } as const;
const POOL = "stratum+tcp://pool.example.net:3333";
type Telemetry = NonNullable<Heartbeat["telemetry"]>;
const healthy: Telemetry = { hashrateGhs: 95_000, temperaturesC: [62, 64, 63], fanRpm: [5400, 5460, 5520, 5580], activePool: POOL };

function contract(backend: string, open: () => Promise<TestDatabase>) {
  describe(`farm alerts on the plane (${backend})`, () => {
    let harness: TestDatabase;
    let services: Services;
    let policies: PolicyService;
    let alerts: FarmAlerts;
    let deviceSide: DeviceSideService;
    let registry: Registry;
    let clock = Date.UTC(2025, 5, 1);
    const commands: Command[] = [];
    const logger = pino({ level: "silent" });

    beforeAll(async () => {
      harness = await open();
      const publisher = {
        async publish(_deviceId: string, kind: string, message: unknown) {
          if (kind === "command") commands.push(message as Command);
        },
        isConnected: () => true,
      } as unknown as DevicePublisher;
      const deps = {
        db: harness.db,
        publisher,
        commandKey: generateKeyPair(),
        logger,
        now: () => clock,
        options: { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 600_000, autoQuarantine: "contraindicated" as const },
      };
      policies = createPolicyService(deps);
      registry = new Registry();
      // Written only on flush(): a minute-long timer and a large batch make the hot path's independence visible.
      alerts = createFarmAlerts({ ...deps, registry, farmAlerts: { flushIntervalMs: 60_000, flushBatch: 10_000, thresholdsRefreshMs: 60_000 } });
      // The hook the plane registers (control-plane/src/plane): the device side itself hands accepted heartbeats over.
      services = createServices({ ...deps, hooks: { afterHeartbeat: (heartbeat) => alerts.observeHeartbeat(heartbeat) } });
      // The fleet's grace: 3 heartbeats at 0 GH/s (the built-in 18 is three minutes at the default 10 s heartbeat).
      await policies.putPolicy(OPERATOR, "farm-alerts", { zeroHashrateSamples: 3 });
      await alerts.start();
      policies.onChange(() => void alerts.refreshThresholds());
      deviceSide = services.deviceSide;
    });
    afterAll(async () => {
      await alerts?.close();
      await services?.close();
      await harness?.close();
    });

    async function acceptedDevice(model = "S19") {
      const keys = generateKeyPair();
      const id = deviceIdFromPublicKey(keys.publicKey);
      const enroll = signObject({ v: 1 as const, type: "enroll" as const, deviceId: id, publicKey: toBase64Url(keys.publicKey), model, firmwareVersion: "1.0.0", agentVersion: "0.1.0", ts: clock }, keys.privateKey);
      await services.service.enroll(enroll as never);
      await services.service.acceptDevice(OPERATOR, id, "test");
      const session: DeviceSession = { connectNonce: `conn-${randomBytes(12).toString("base64url")}`, publicKey: toBase64Url(keys.publicKey), lastHeartbeatSeq: -1 };
      let seq = 0;
      let evidenceSeq = 0;
      return {
        id,
        /** Signed heartbeats (HW-LIVE-1) 10 s apart on the plane's clock, one per telemetry sample. */
        async heartbeats(...samples: Telemetry[]) {
          for (const telemetry of samples) {
            clock += 10_000;
            seq += 1;
            const heartbeat = signObject({ v: 1 as const, type: "heartbeat" as const, deviceId: id, connectNonce: session.connectNonce, seq, ts: clock, uptimeMs: seq * 10_000, containment: "none" as const, outboxDepth: 0, telemetry }, keys.privateKey);
            await deviceSide.onHeartbeat(heartbeat as Heartbeat, session);
          }
        },
        /** Clean signed evidence (no reference values: a warning verdict of its own). */
        async evidence() {
          evidenceSeq += 1;
          const evidence = signObject({ v: 1 as const, type: "evidence" as const, deviceId: id, seq: evidenceSeq, nonce: null, reason: "timer" as const, ts: clock, model, firmwareVersion: "1.0.0", agentVersion: "0.1.0", bootId: "boot-1", measurements: [] }, keys.privateKey);
          return deviceSide.onEvidence(evidence as Evidence);
        },
      };
    }

    const view = (id: string) => services.service.getDevice(id);
    const farmEvents = async (id: string) => (await harness.db.select().from(planeEvents).where(and(eq(planeEvents.deviceId, id), eq(planeEvents.kind, "farm.alert")))).map((r) => r.data as Record<string, unknown>);
    const raisedTotal = async (alert: string) => (await registry.getSingleMetric("hashward_farm_alerts_total")!.get()).values.find((v) => v.labels.alert === alert)?.value ?? 0;

    it("HW-ALERT-2: alive at 0 GH/s is a contraindicated finding with its evidence in the attestation result and history, an event, an audit row, a metric, and auto-quarantine", async () => {
      const d = await acceptedDevice();
      await d.evidence();
      expect((await view(d.id)).appraisal).toBe("warning"); // no reference values
      const before = await raisedTotal("zero-hashrate");
      await d.heartbeats(healthy, { ...healthy, hashrateGhs: 0 }, { ...healthy, hashrateGhs: 0 }, { ...healthy, hashrateGhs: 0 });
      // HW-ALERT-4: the heartbeats were taken; nothing is written until the batch is.
      expect(await farmEvents(d.id)).toEqual([]);
      await alerts.flush();

      const device = await view(d.id);
      expect(device.appraisal).toBe("contraindicated");
      const finding = device.lastAppraisal!.findings.find((f) => f.guard === "farm-alert");
      expect(finding).toMatchObject({ claim: "runtime-opaque", tier: "contraindicated", subject: "zero-hashrate", expected: { hashrateGhs: "> 0", zeroHashrateSamples: 3 }, seen: { hashrateGhs: 0, samples: 3 } });
      expect(device.lastAppraisal!.trustworthiness["runtime-opaque"]).toBe("contraindicated");
      expect(device.lastAppraisal!.farmAlerts?.base.status).toBe("warning"); // the evidence's own verdict, kept
      const history = await services.service.history(d.id, 100);
      const entry = history.find((t) => t.machine === "appraisal" && t.to === "contraindicated");
      expect(entry?.reason).toContain("farm alert: zero-hashrate");
      expect((entry?.evidence as AttestationResult).findings.map((f) => f.subject)).toContain("zero-hashrate");
      expect(await farmEvents(d.id)).toEqual([expect.objectContaining({ alert: "zero-hashrate", tier: "contraindicated", guard: "farm-alert", evidence: expect.objectContaining({ hashrateGhs: 0 }), thresholds: expect.objectContaining({ zeroHashrateSamples: 3 }) })]);
      expect(await harness.db.select().from(auditLog).where(and(eq(auditLog.target, d.id), eq(auditLog.action, "farm-alert.zero-hashrate")))).toHaveLength(1);
      expect(await raisedTotal("zero-hashrate")).toBe(before + 1);
      expect(commands.filter((c) => c.deviceId === d.id).map((c) => c.action)).toEqual(["quarantine"]);
      expect(device.containment).toBe("quarantine_requested");

      // Evidence while the alert is active keeps it folded in (the evidence does not see telemetry).
      const result = await d.evidence();
      expect(result.status).toBe("contraindicated");
      expect(result.findings.map((f) => f.subject)).toContain("zero-hashrate");

      // Hashing again: the finding clears, the verdict returns to what the evidence says, and no event is raised.
      await d.heartbeats(healthy);
      await alerts.flush();
      const cleared = await view(d.id);
      expect(cleared.appraisal).toBe("warning");
      expect(cleared.lastAppraisal!.findings.filter((f) => f.guard === "farm-alert")).toEqual([]);
      expect(cleared.lastAppraisal!.farmAlerts).toBeUndefined();
      expect((await services.service.history(d.id, 100)).some((t) => t.to === "warning" && t.reason.includes("zero-hashrate cleared"))).toBe(true);
      expect(await farmEvents(d.id)).toHaveLength(1);
    });

    it("HW-ALERT-2: fans stopped with temperatures climbing is contraindicated; a hashrate drop is a warning", async () => {
      const fans = await acceptedDevice();
      await fans.heartbeats(healthy, ...[70, 78, 86].map((c) => ({ ...healthy, fanRpm: [0, 0, 5520, 5580], temperaturesC: [c, 60] })));
      const drop = await acceptedDevice();
      await drop.heartbeats(...Array.from({ length: 12 }, () => healthy), { ...healthy, hashrateGhs: 40_000 });
      await alerts.flush();
      const f = await view(fans.id);
      expect(f.appraisal).toBe("contraindicated");
      expect(f.lastAppraisal!.findings).toContainEqual(expect.objectContaining({ subject: "fans-stopped", seen: expect.objectContaining({ temperatureClimbing: true, fans: [{ index: 0, rpm: 0 }, { index: 1, rpm: 0 }] }) }));
      const d = await view(drop.id);
      expect(d.appraisal).toBe("warning");
      expect(d.lastAppraisal!.findings).toContainEqual(expect.objectContaining({ subject: "hashrate-drop", tier: "warning", seen: expect.objectContaining({ hashrateGhs: 40_000 }) }));
      expect(commands.filter((c) => c.deviceId === drop.id)).toEqual([]); // a warning quarantines nothing
    });

    it("HW-ALERT-4: a failed write loses nothing: the batch is kept, retried, and written once", async () => {
      let failures = 1;
      // The same database, whose next transaction fails (a lost connection, a full disk).
      const flaky = Object.create(harness.db, {
        transaction: {
          value: (...args: Parameters<typeof harness.db.transaction>) => (failures-- > 0 ? Promise.reject(new Error("connection lost")) : harness.db.transaction(...args)),
        },
      }) as typeof harness.db;
      const flakyDeps = { publisher: { publish: async () => undefined, isConnected: () => true } as unknown as DevicePublisher, commandKey: generateKeyPair(), logger, now: () => clock, options: { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 600_000, autoQuarantine: "off" as const } };
      const flakyAlerts = createFarmAlerts({ ...flakyDeps, db: flaky, registry: new Registry(), farmAlerts: { flushIntervalMs: 60_000, flushBatch: 10_000 } });
      await flakyAlerts.start();
      const flakyServices = createServices({ ...flakyDeps, db: harness.db, hooks: { afterHeartbeat: (heartbeat) => flakyAlerts.observeHeartbeat(heartbeat) } });
      const d = await acceptedDevice();
      const previous = deviceSide;
      deviceSide = flakyServices.deviceSide;
      try {
        await d.heartbeats(healthy, ...Array.from({ length: 3 }, () => ({ ...healthy, fanRpm: [0, 0, 0, 0] })));
        await flakyAlerts.flush(); // fails: kept
        expect(await farmEvents(d.id)).toEqual([]);
        await flakyAlerts.flush(); // retried
        expect((await farmEvents(d.id)).map((e) => e.alert)).toEqual(["fans-stopped"]);
        await flakyAlerts.flush();
        expect(await farmEvents(d.id)).toHaveLength(1);
        expect((await view(d.id)).lastAppraisal!.findings.map((f) => f.subject)).toEqual(["fans-stopped"]);
      } finally {
        deviceSide = previous;
        await flakyServices.close();
        await flakyAlerts.close();
      }
    });

    it("HW-ALERT-3: a farm-alerts policy for a device group changes the outcome; a bad threshold is refused naming it, writing nothing", async () => {
      const lenient = await acceptedDevice();
      const strict = await acceptedDevice();
      const change = await policies.putPolicy(OPERATOR, "farm-alerts", { scope: { deviceIds: [lenient.id] }, zeroHashrateSamples: 10 });
      expect(change.delivery).toEqual({ version: null, devices: 0 }); // never sent to devices
      expect(change.policy).toMatchObject({ kind: "farm-alerts", zeroHashrateSamples: 10, fanStoppedRpm: 300 });
      await alerts.refreshThresholds();
      expect(alerts.thresholdsFor(lenient.id).zeroHashrateSamples).toBe(10);
      expect((await policies.devicePolicy(lenient.id)).farmAlerts.zeroHashrateSamples).toBe(10);
      const zeros = Array.from({ length: 5 }, () => ({ ...healthy, hashrateGhs: 0 }));
      await lenient.heartbeats(healthy, ...zeros);
      await strict.heartbeats(healthy, ...zeros);
      await alerts.flush();
      expect(await farmEvents(lenient.id)).toEqual([]);
      expect((await view(lenient.id)).appraisal).toBe("unknown");
      expect((await farmEvents(strict.id)).map((e) => e.alert)).toEqual(["zero-hashrate"]);
      expect((await view(strict.id)).appraisal).toBe("contraindicated"); // no evidence yet: the alert alone decides

      const stored = async () => ({ policies: await harness.db.select().from(policiesTable), audit: (await harness.db.select().from(auditLog)).length });
      const before = await stored();
      for (const [body, field] of [
        [{ zeroHashrateSamples: 0 }, "zeroHashrateSamples"],
        [{ hashrateDropRatio: 1 }, "hashrateDropRatio"],
        [{ windowSamples: 20, minPoolSwitches: 21 }, "minPoolSwitches"],
        [{ fanFloor: 3 }, "fanFloor"],
      ] as const) {
        await expect(policies.putPolicy(OPERATOR, "farm-alerts", body as never)).rejects.toMatchObject({ field });
      }
      expect((await policies.listPolicies("farm-alerts")).policies).toHaveLength(2); // the fleet's and the group's
      expect(await stored()).toEqual(before);
    });
  });
}

onEveryDatabase("farm alerts", contract);

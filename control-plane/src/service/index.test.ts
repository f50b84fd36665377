/**
 * Contract suite for the domain services, run against every database implementation: PGlite (always) and
 * PostgreSQL when HASHWARD_TEST_DATABASE_URL is set (a throw-away database per run).
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { eq, sql } from "drizzle-orm";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, type KeyPair, signObject, toBase64Url } from "../../../shared/crypto/index.js";
import { FreshnessError, ValidationError, VerificationError } from "../../../shared/errors/index.js";
import { type Ack, type Challenge, type Command, type Evidence, type Heartbeat, type Hello, verifyCommand } from "../../../shared/protocol/index.js";
import { CapacityError, ConflictError, LivenessRefusal, NotFoundError } from "../errors.js";
import { connectTokenNonces, type Database } from "../db/index.js";
import { onEveryDatabase } from "../db/test-postgres.js";
import { telemetryHistory } from "../ui/queries.js";
import { createServices, type DevicePublisher, type DeviceSession, type ServiceOptions, type Services } from "./index.js";

const A = "a".repeat(64);
const B = "b".repeat(64);
const OPERATOR = { kind: "operator", id: "tok_test", role: "operator" } as const;
const OPTIONS: ServiceOptions = { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "contraindicated", commandRetryMs: 1_000 };

class RecordingPublisher implements DevicePublisher {
  connected = new Set<string>();
  sent: Array<{ deviceId: string; kind: "challenge" | "command"; message: Challenge | Command }> = [];
  disconnected: string[] = [];
  async publish(deviceId: string, kind: "challenge" | "command", message: Challenge | Command): Promise<void> {
    this.sent.push({ deviceId, kind, message });
  }
  isConnected(deviceId: string): boolean {
    return this.connected.has(deviceId);
  }
  disconnect(deviceId: string): void {
    this.disconnected.push(deviceId);
  }
  of(deviceId: string, kind: "challenge" | "command") {
    return this.sent.filter((s) => s.deviceId === deviceId && s.kind === kind).map((s) => s.message);
  }
}

interface Harness {
  db: Database;
  close(): Promise<void>;
}

function contract(name: string, open: () => Promise<Harness>) {
  describe(`ControlPlaneService contract (${name})`, () => {
    let harness: Harness;
    let services: Services;
    let clock = Date.UTC(2025, 5, 1);
    const publisher = new RecordingPublisher();
    const commandKey = generateKeyPair();
    const logger = pino({ level: "silent" });

    beforeAll(async () => {
      harness = await open();
      services = createServices({ db: harness.db, publisher, commandKey, logger, now: () => clock, options: OPTIONS });
    });
    afterAll(async () => {
      await services?.close();
      await harness?.close();
    });

    async function count(table: string): Promise<number> {
      const result = await harness.db.execute(sql.raw(`select count(*)::int as n from ${table}`));
      return (result.rows[0] as { n: number }).n;
    }
    async function counts() {
      const tables = ["devices", "transitions", "audit_log", "commands", "evidence", "challenges", "enrollment_tokens", "device_events"];
      return Object.fromEntries(await Promise.all(tables.map(async (t) => [t, await count(t)])));
    }

    function device(model = "S19", firmwareVersion = "1.2.0") {
      const keys = generateKeyPair();
      const id = deviceIdFromPublicKey(keys.publicKey);
      let seq = 0;
      return {
        keys,
        id,
        enrollment(token?: string, signer: KeyPair = keys) {
          return signObject(
            {
              v: 1 as const,
              type: "enroll" as const,
              deviceId: id,
              publicKey: toBase64Url(keys.publicKey),
              model,
              firmwareVersion,
              agentVersion: "0.1.0",
              ...(token ? { enrollmentToken: token } : {}),
              ts: clock,
            },
            signer.privateKey,
          );
        },
        evidence(measurements: Evidence["measurements"], nonce: string | null = null, overrides: Partial<Evidence> = {}): Evidence {
          seq += 1;
          return signObject(
            {
              v: 1 as const,
              type: "evidence" as const,
              deviceId: id,
              seq,
              nonce,
              reason: nonce ? ("challenge" as const) : ("timer" as const),
              ts: clock,
              model,
              firmwareVersion,
              agentVersion: "0.1.0",
              bootId: "boot-1",
              measurements,
              ...overrides,
            },
            keys.privateKey,
          ) as Evidence;
        },
        /** The broker's view of one MQTT connection of this device (HW-LIVE-1). */
        session(connectNonce = `conn-${randomBytes(12).toString("base64url")}`): DeviceSession {
          return { connectNonce, publicKey: toBase64Url(keys.publicKey), lastHeartbeatSeq: -1 };
        },
        hello(session: DeviceSession, overrides: Partial<Hello> = {}, signer: KeyPair = keys): Hello {
          const body = {
            v: 1 as const,
            type: "hello" as const,
            deviceId: id,
            connectNonce: session.connectNonce,
            model,
            firmwareVersion,
            agentVersion: "0.1.0",
            bootId: "boot-1",
            containment: "none" as const,
            lastCommandSeq: 0,
            ts: clock,
            ...overrides,
          };
          return signObject(body, signer.privateKey) as Hello;
        },
        heartbeat(session: DeviceSession, seq: number, overrides: Partial<Heartbeat> = {}, signer: KeyPair = keys): Heartbeat {
          const body = {
            v: 1 as const,
            type: "heartbeat" as const,
            deviceId: id,
            connectNonce: session.connectNonce,
            seq,
            ts: clock,
            uptimeMs: 5,
            containment: "none" as const,
            outboxDepth: 0,
            ...overrides,
          };
          return signObject(body, signer.privateKey) as Heartbeat;
        },
        ack(command: Command, status: "done" | "failed" = "done", signer: KeyPair = keys): Ack {
          return signObject(
            {
              v: 1 as const,
              type: "ack" as const,
              deviceId: id,
              seq: command.seq,
              action: command.action,
              status,
              containment: command.action === "quarantine" && status === "done" ? ("quarantined" as const) : ("none" as const),
              ts: clock,
            },
            signer.privateKey,
          ) as Ack;
        },
      };
    }

    async function acceptedDevice(model = "S19", firmwareVersion = "1.2.0") {
      const d = device(model, firmwareVersion);
      await services.service.enroll(d.enrollment());
      await services.service.acceptDevice(OPERATOR, d.id, "test");
      publisher.connected.add(d.id);
      return d;
    }

    const good: Evidence["measurements"] = [
      { path: "/config/cgminer.conf", kind: "file", sha256: A, size: 10 },
      { path: "/usr/bin/cgminer", kind: "file", sha256: B, size: 20 },
    ];

    it("creates the first admin token once and authenticates by hash", async () => {
      const token = await services.ensureAdminToken();
      expect(token).toMatch(/^hwa_[A-Za-z0-9_-]{43}$/);
      expect(await services.ensureAdminToken()).toBeNull();
      const principal = await services.service.authenticateApiToken(token ?? "");
      expect(principal?.role).toBe("admin");
      expect(await services.service.authenticateApiToken("hwa_nope")).toBeNull();
      const created = await services.service.createApiToken(OPERATOR, { role: "viewer", label: "dash" });
      expect((await services.service.authenticateApiToken(created.token))?.role).toBe("viewer");
      const dump = JSON.stringify((await harness.db.execute(sql`select * from api_tokens`)).rows);
      expect(dump).not.toContain(created.token);
    });

    it("enrolls without a token as pending, idempotently, until an operator accepts", async () => {
      const d = device();
      const first = await services.service.enroll(d.enrollment());
      expect(first).toEqual({ deviceId: d.id, enrollment: "pending", commandPublicKey: toBase64Url(commandKey.publicKey) });
      const before = await counts();
      expect((await services.service.enroll(d.enrollment())).enrollment).toBe("pending");
      expect((await counts()).transitions).toBe(before.transitions);
      expect((await services.deviceSide.identitiesForConnect([d.id])).get(d.id)?.enrollment).toBe("pending");
      const view = await services.service.acceptDevice(OPERATOR, d.id, "looks right");
      expect(view.enrollment).toBe("accepted");
      expect((await services.service.enroll(d.enrollment())).enrollment).toBe("accepted");
      const history = await services.service.history(d.id, 10);
      expect(history.map((t) => [t.from, t.to])).toEqual([["pending", "accepted"], ["new", "pending"]]);
      expect(history[0]?.actor).toEqual(OPERATOR);
      const audit = (await services.service.listAudit(50, 0)).filter((e) => e.target === d.id);
      expect(audit.map((e) => e.action)).toEqual(["enrollment.accepted", "enrollment.pending"]);
    });

    it("accepts at once with an enrollment token and enforces its use limit atomically", async () => {
      const { token } = await services.service.createEnrollmentToken(OPERATOR, { ttlMs: 60_000, maxUses: 1, label: "rack 1" });
      expect(token).toMatch(/^hwe_/);
      const d1 = device();
      expect((await services.service.enroll(d1.enrollment(token))).enrollment).toBe("accepted");
      // The same device re-posting with its token does not consume another use.
      expect((await services.service.enroll(d1.enrollment(token))).enrollment).toBe("accepted");
      const d2 = device();
      const before = await counts();
      await expect(services.service.enroll(d2.enrollment(token))).rejects.toBeInstanceOf(ConflictError);
      await expect(services.service.enroll(d2.enrollment("hwe_unknown"))).rejects.toBeInstanceOf(VerificationError);
      expect(await counts()).toEqual(before);
      expect((await services.deviceSide.identitiesForConnect([d2.id])).has(d2.id)).toBe(false);
    });

    it("caps devices waiting in pending: a new key without a token is refused (429) and nothing is written", async () => {
      const pendingNow = (await services.service.listDevices({ enrollment: "pending", limit: 1000, offset: 0 })).length;
      const capped = createServices({ db: harness.db, publisher, commandKey, logger, now: () => clock, options: { ...OPTIONS, maxPendingDevices: pendingNow + 1 } });
      try {
        expect((await capped.service.enroll(device().enrollment())).enrollment).toBe("pending");
        const before = await counts();
        await expect(capped.service.enroll(device().enrollment())).rejects.toBeInstanceOf(CapacityError);
        expect(await counts()).toEqual(before);
        // An operator's token still gets a device in, and a pending device re-posting is not refused.
        const { token } = await capped.service.createEnrollmentToken(OPERATOR, { ttlMs: 60_000, maxUses: 1 });
        expect((await capped.service.enroll(device().enrollment(token))).enrollment).toBe("accepted");
      } finally {
        await capped.close();
      }
    });

    it("remembers each connect-token nonce once, in the database, until the token expired", async () => {
      const d = await acceptedDevice();
      expect(await services.deviceSide.rememberConnectNonce(d.id, "nonce-aaaaaaaaaaaaaaaa", clock + 60_000)).toBe(true);
      expect(await services.deviceSide.rememberConnectNonce(d.id, "nonce-aaaaaaaaaaaaaaaa", clock + 60_000)).toBe(false);
      const rows = async () => (await harness.db.execute(sql`select nonce from connect_token_nonces where device_id = ${d.id}`)).rows.length;
      expect(await rows()).toBe(1);
      clock += 61_000;
      await services.deviceSide.retryPendingCommands();
      expect(await rows()).toBe(0);
    });

    it("refuses an expired enrollment token", async () => {
      const { token } = await services.service.createEnrollmentToken(OPERATOR, { ttlMs: 1000, maxUses: 5 });
      clock += 2000;
      await expect(services.service.enroll(device().enrollment(token))).rejects.toBeInstanceOf(ConflictError);
      await expect(services.service.createEnrollmentToken(OPERATOR, { ttlMs: 0, maxUses: 1 })).rejects.toBeInstanceOf(ValidationError);
    });

    it("refuses a bad signature, a foreign id and a stale timestamp, writing nothing", async () => {
      const d = device();
      const before = await counts();
      await expect(services.service.enroll(d.enrollment(undefined, generateKeyPair()))).rejects.toBeInstanceOf(VerificationError);
      const other = device();
      const forged = signObject({ ...d.enrollment(), deviceId: other.id }, d.keys.privateKey);
      await expect(services.service.enroll(forged)).rejects.toBeInstanceOf(VerificationError);
      const old = signObject({ ...d.enrollment(), ts: clock - 10 * 60_000 }, d.keys.privateKey);
      await expect(services.service.enroll(old)).rejects.toBeInstanceOf(FreshnessError);
      expect(await counts()).toEqual(before);
    });

    it("keeps rejected and revoked devices so; revoked is terminal", async () => {
      const r = device();
      await services.service.enroll(r.enrollment());
      await services.service.rejectDevice(OPERATOR, r.id, "unknown hardware");
      expect((await services.service.enroll(r.enrollment())).enrollment).toBe("rejected");
      const v = await acceptedDevice();
      const revoked = await services.service.revokeDevice(OPERATOR, v.id, "decommissioned");
      expect(revoked.enrollment).toBe("revoked");
      expect(publisher.disconnected).toContain(v.id);
      expect((await services.service.enroll(v.enrollment())).enrollment).toBe("revoked");
      await expect(services.service.acceptDevice(OPERATOR, v.id, "oops")).rejects.toBeInstanceOf(ConflictError);
      await expect(services.service.revokeDevice(OPERATOR, v.id, "again")).rejects.toBeInstanceOf(ConflictError);
      await expect(services.service.acceptDevice(OPERATOR, "hw-000000000000000000000000", "x")).rejects.toBeInstanceOf(NotFoundError);
    });

    it("accepts a pre-authorized key on arrival", async () => {
      const d = device();
      const view = await services.service.preauthorizeDevice(OPERATOR, { publicKey: toBase64Url(d.keys.publicKey), model: "S19" });
      expect(view).toMatchObject({ deviceId: d.id, enrollment: "accepted", firmwareVersion: "" });
      expect((await services.service.enroll(d.enrollment())).enrollment).toBe("accepted");
      expect((await services.service.getDevice(d.id)).firmwareVersion).toBe("1.2.0");
      await expect(services.service.preauthorizeDevice(OPERATOR, { publicKey: "short", model: "S19" })).rejects.toBeInstanceOf(ValidationError);
    });

    it("quarantines with a signed command, completes on the ack, and releases the same way", async () => {
      const d = await acceptedDevice();
      const [command] = await services.service.quarantine(OPERATOR, [d.id], "pool hijack suspected");
      expect(command).toMatchObject({ deviceId: d.id, seq: 1, action: "quarantine", status: "pending" });
      expect((await services.service.getDevice(d.id)).containment).toBe("quarantine_requested");
      const [sent] = publisher.of(d.id, "command") as Command[];
      expect(sent).toBeDefined();
      verifyCommand(sent as Command, commandKey.publicKey, { deviceId: d.id, lastSeq: 0, nowMs: clock });

      // Quarantining again is a no-op returning the existing command.
      const again = await services.service.quarantine(OPERATOR, [d.id], "again");
      expect(again.map((c) => c.seq)).toEqual([1]);
      expect(publisher.of(d.id, "command")).toHaveLength(1);

      await services.deviceSide.onAck(d.ack(sent as Command));
      expect((await services.service.getDevice(d.id)).containment).toBe("quarantined");
      const before = await counts();
      await services.deviceSide.onAck(d.ack(sent as Command)); // redelivered: nothing changes
      expect(await counts()).toEqual(before);

      const [release] = await services.service.release(OPERATOR, [d.id], "cleared");
      expect(release).toMatchObject({ seq: 2, action: "release", status: "pending" });
      expect((await services.service.getDevice(d.id)).containment).toBe("release_requested");
      const releaseCommand = publisher.of(d.id, "command")[1] as Command;
      await services.deviceSide.onAck(d.ack(releaseCommand));
      expect((await services.service.getDevice(d.id)).containment).toBe("none");

      const history = await services.service.history(d.id, 10);
      expect(history.filter((t) => t.machine === "containment").map((t) => t.to)).toEqual([
        "none",
        "release_requested",
        "quarantined",
        "quarantine_requested",
      ]);
      expect((history[0]?.evidence as { ack: Ack }).ack.seq).toBe(2);
      const commands = await services.service.listCommands(d.id, 10);
      expect(commands.map((c) => [c.seq, c.status])).toEqual([
        [2, "acked"],
        [1, "acked"],
      ]);
      const audit = (await services.service.listAudit(100, 0)).filter((e) => e.target === d.id).map((e) => e.action);
      expect(audit).toContain("quarantine.noop");
      expect(audit).toContain("containment.quarantine_requested");
    });

    it("supersedes a pending quarantine with a release", async () => {
      const d = await acceptedDevice();
      await services.service.quarantine(OPERATOR, [d.id], "suspect");
      await services.service.release(OPERATOR, [d.id], "false alarm");
      const commands = await services.service.listCommands(d.id, 10);
      expect(commands.map((c) => [c.seq, c.action, c.status])).toEqual([
        [2, "release", "pending"],
        [1, "quarantine", "superseded"],
      ]);
    });

    it("refuses a forged ack and an ack for an unknown command, changing nothing", async () => {
      const d = await acceptedDevice();
      await services.service.quarantine(OPERATOR, [d.id], "suspect");
      const sent = publisher.of(d.id, "command")[0] as Command;
      const before = await counts();
      await expect(services.deviceSide.onAck(d.ack(sent, "done", generateKeyPair()))).rejects.toBeInstanceOf(VerificationError);
      await expect(services.deviceSide.onAck(d.ack({ ...sent, seq: 99 }))).rejects.toBeInstanceOf(VerificationError);
      expect(await counts()).toEqual(before);
      expect((await services.service.getDevice(d.id)).containment).toBe("quarantine_requested");
      await expect(services.service.quarantine(OPERATOR, [d.id, "hw-ffffffffffffffffffffffff"], "x")).rejects.toBeInstanceOf(NotFoundError);
    });

    it("applies acks arriving together in one batch, refusing only the bad ones", async () => {
      const fleet = await Promise.all([1, 2, 3, 4].map(() => acceptedDevice()));
      await services.service.quarantine(OPERATOR, fleet.map((d) => d.id), "fleet incident");
      const sent = fleet.map((d) => publisher.of(d.id, "command").at(-1) as Command);
      const results = await Promise.allSettled([
        services.deviceSide.onAck(fleet[0]!.ack(sent[0]!)),
        services.deviceSide.onAck(fleet[1]!.ack(sent[1]!, "done", generateKeyPair())), // forged
        services.deviceSide.onAck(fleet[2]!.ack({ ...sent[2]!, seq: 99 })), // unknown command
        services.deviceSide.onAck(fleet[3]!.ack(sent[3]!, "failed")),
      ]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled"]);
      expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(VerificationError);
      expect((results[2] as PromiseRejectedResult).reason).toBeInstanceOf(VerificationError);
      const states = await Promise.all(fleet.map(async (d) => (await services.service.getDevice(d.id)).containment));
      expect(states).toEqual(["quarantined", "quarantine_requested", "quarantine_requested", "none"]);
      expect((await services.service.listCommands(fleet[1]!.id, 1))[0]?.status).toBe("pending");
    });

    it("expires unacknowledged commands and falls back", async () => {
      const d = await acceptedDevice();
      await services.service.quarantine(OPERATOR, [d.id], "suspect");
      publisher.sent = [];
      clock += OPTIONS.commandRetryMs!; // a retry interval after its publish, the unacked command is re-sent (HW-TRUST-3)
      await services.deviceSide.retryPendingCommands();
      expect(publisher.of(d.id, "command")).toHaveLength(1);
      clock += OPTIONS.commandTtlMs + 1;
      await services.deviceSide.retryPendingCommands();
      expect((await services.service.listCommands(d.id, 1))[0]?.status).toBe("expired");
      expect((await services.service.getDevice(d.id)).containment).toBe("none");
      const [last] = await services.service.history(d.id, 1);
      expect(last).toMatchObject({ machine: "containment", from: "quarantine_requested", to: "none", actor: { kind: "system" } });
    });

    it("backs off re-publishing a command the device has not acked, never within a retry interval of its last publish", async () => {
      const d = await acceptedDevice();
      await services.service.quarantine(OPERATOR, [d.id], "suspect");
      publisher.sent = [];
      const publishedOnTicks: number[] = [];
      for (let tick = 1; tick <= 20; tick++) {
        const before = publisher.of(d.id, "command").length;
        await services.deviceSide.retryPendingCommands();
        if (publisher.of(d.id, "command").length > before) publishedOnTicks.push(tick);
        clock += OPTIONS.commandRetryMs!; // ticks are a retry interval apart (a re-publish is claimed per interval, HW-HA-4)
      }
      // Tick 1 comes right after the quarantine's own publish: nothing is re-sent within a retry interval of the last
      // publish (its ack may be in flight). Then gaps 2, 4, then MAX_RETRY_GAP_TICKS (8): not a copy every tick to a
      // device that is only slow to ack.
      expect(publishedOnTicks).toEqual([2, 4, 8, 16]);
      // A new command changes what is pending: it goes out when issued, and the first tick a retry interval later
      // sends it again (the backoff starts afresh for the changed set).
      publisher.sent = [];
      await services.service.release(OPERATOR, [d.id], "cleared");
      expect(publisher.of(d.id, "command").map((c) => (c as { action: string }).action)).toEqual(["release"]);
      await services.deviceSide.retryPendingCommands();
      expect(publisher.of(d.id, "command")).toHaveLength(1);
      clock += OPTIONS.commandRetryMs!;
      await services.deviceSide.retryPendingCommands();
      expect(publisher.of(d.id, "command").map((c) => (c as { action: string }).action)).toEqual(["release", "release"]);
    });

    it("HW-HA-4: a command issued while this replica could not reach the device goes out on the first tick that can", async () => {
      const d = await acceptedDevice();
      publisher.connected.delete(d.id); // connected through another replica's broker
      await services.service.quarantine(OPERATOR, [d.id], "suspect");
      expect(publisher.of(d.id, "command")).toHaveLength(0);
      publisher.connected.add(d.id);
      await services.deviceSide.retryPendingCommands();
      expect(publisher.of(d.id, "command").map((c) => (c as { action: string }).action)).toEqual(["quarantine"]);
    });

    it("re-publishes pending commands and sends a challenge on hello", async () => {
      const d = await acceptedDevice();
      await services.service.quarantine(OPERATOR, [d.id], "suspect");
      publisher.sent = [];
      const session = d.session();
      await services.deviceSide.onHello(d.hello(session, { firmwareVersion: "1.2.1", agentVersion: "0.2.0", bootId: "boot-2" }), session);
      expect(publisher.sent.map((s) => s.kind)).toEqual(["command", "challenge"]);
      const view = await services.service.getDevice(d.id);
      expect(view).toMatchObject({ firmwareVersion: "1.2.1", agentVersion: "0.2.0", connected: true });
    });

    it("appraises evidence: warning without reference values, trusted with them", async () => {
      const d = await acceptedDevice("S19j", "2.0.0");
      const noRef = await services.deviceSide.onEvidence(d.evidence(good));
      expect(noRef.status).toBe("warning");
      expect(noRef.summary).toBe("no approved reference values for S19j 2.0.0");
      expect((await services.service.getDevice(d.id)).appraisal).toBe("warning");

      const captured = await services.service.captureReferenceValues(OPERATOR, d.id);
      expect(captured).toMatchObject({ status: "proposed", source: "captured", capturedFrom: d.id, model: "S19j", firmwareVersion: "2.0.0" });
      const approved = await services.service.approveReferenceValues(OPERATOR, captured.id);
      expect(approved.status).toBe("approved");

      const { nonce } = await services.service.attestNow(OPERATOR, d.id);
      expect(publisher.of(d.id, "challenge").some((c) => (c as Challenge).nonce === nonce)).toBe(true);
      const result = await services.deviceSide.onEvidence(d.evidence(good, nonce, { reason: "challenge" }));
      expect(result).toMatchObject({ status: "affirming", referenceId: captured.id });
      const view = await services.service.getDevice(d.id);
      expect(view.appraisal).toBe("trusted");
      expect(view.lastAppraisal?.referenceId).toBe(captured.id);

      const replacement = await services.service.registerReferenceValues(OPERATOR, { model: "S19j", firmwareVersion: "2.0.0", measurements: [{ path: "/x", sha256: A, size: 1 }] });
      expect(replacement.status).toBe("approved");
      const sets = await services.service.listReferenceValues({ model: "S19j" });
      expect(sets.find((s) => s.id === captured.id)?.status).toBe("superseded");
      await expect(services.service.approveReferenceValues(OPERATOR, captured.id)).rejects.toBeInstanceOf(ConflictError);
    });

    it("refuses replayed seq, reused, unknown and foreign nonces, and forged evidence, writing nothing", async () => {
      const d = await acceptedDevice();
      const { nonce } = await services.service.attestNow(OPERATOR, d.id);
      const accepted = d.evidence(good, nonce);
      await services.deviceSide.onEvidence(accepted);
      const before = await counts();
      await expect(services.deviceSide.onEvidence(accepted)).rejects.toBeInstanceOf(FreshnessError);
      await expect(services.deviceSide.onEvidence(d.evidence(good, nonce))).rejects.toBeInstanceOf(FreshnessError);
      await expect(services.deviceSide.onEvidence(d.evidence(good, "A".repeat(32)))).rejects.toBeInstanceOf(FreshnessError);
      const other = await acceptedDevice();
      const { nonce: foreign } = await services.service.attestNow(OPERATOR, other.id);
      const mid = await counts();
      await expect(services.deviceSide.onEvidence(d.evidence(good, foreign))).rejects.toBeInstanceOf(FreshnessError);
      await expect(services.deviceSide.onEvidence(d.evidence(good, null, { ts: clock - 10 * 60_000 }))).rejects.toBeInstanceOf(FreshnessError);
      const forged = signObject({ ...d.evidence(good), sig: undefined }, generateKeyPair().privateKey) as Evidence;
      await expect(services.deviceSide.onEvidence(forged)).rejects.toBeInstanceOf(VerificationError);
      expect((await counts()).evidence).toBe(before.evidence);
      expect(await counts()).toEqual(mid);
      // An expired challenge is refused too.
      const { nonce: late } = await services.service.attestNow(OPERATOR, d.id);
      clock += OPTIONS.challengeTtlMs + 1;
      await expect(services.deviceSide.onEvidence(d.evidence(good, late))).rejects.toBeInstanceOf(FreshnessError);
    });

    it("auto-quarantines a contraindicated device with the policy as actor", async () => {
      const d = await acceptedDevice("S9", "3.0.0");
      await services.service.registerReferenceValues(OPERATOR, { model: "S9", firmwareVersion: "3.0.0", measurements: good.map(({ path, sha256, size }) => ({ path, sha256, size })) });
      expect((await services.deviceSide.onEvidence(d.evidence(good))).status).toBe("affirming");
      const tampered = good.map((m) => (m.path === "/config/cgminer.conf" ? { ...m, sha256: B, size: 11 } : m));
      const result = await services.deviceSide.onEvidence(d.evidence(tampered));
      expect(result.status).toBe("contraindicated");
      expect(result.differences).toEqual([
        { path: "/config/cgminer.conf", claim: "configuration", kind: "changed", expected: { sha256: A, size: 10 }, seen: { sha256: B, size: 11 } },
      ]);
      const view = await services.service.getDevice(d.id);
      expect(view).toMatchObject({ appraisal: "contraindicated", containment: "quarantine_requested" });
      const history = await services.service.history(d.id, 2);
      expect(history.map((t) => [t.machine, t.to, t.actor.id])).toEqual([
        ["containment", "quarantine_requested", "policy"],
        ["appraisal", "contraindicated", d.id],
      ]);
      expect((history[1]?.evidence as { status: string }).status).toBe("contraindicated");
    });

    it("lets an operator's release of a known-bad device stick until its evidence changes again", async () => {
      const d = await acceptedDevice("S9", "3.0.0");
      await services.deviceSide.onEvidence(d.evidence(good));
      const tampered = good.map((m) => (m.path === "/config/cgminer.conf" ? { ...m, sha256: B } : m));
      await services.deviceSide.onEvidence(d.evidence(tampered));
      const quarantine = publisher.of(d.id, "command").at(-1) as Command;
      await services.deviceSide.onAck(d.ack(quarantine));
      await services.service.release(OPERATOR, [d.id], "investigating on site");
      await services.deviceSide.onAck(d.ack(publisher.of(d.id, "command").at(-1) as Command));
      expect((await services.service.getDevice(d.id)).containment).toBe("none");

      await services.deviceSide.onEvidence(d.evidence(tampered));
      expect((await services.service.getDevice(d.id)).containment).toBe("none");
      const worse = [...tampered, { path: "/etc/ld.so.preload", kind: "file" as const, sha256: A, size: 3 }];
      await services.deviceSide.onEvidence(d.evidence(worse));
      expect((await services.service.getDevice(d.id)).containment).toBe("quarantine_requested");
    });

    it("quarantines by policy on a contraindicated guard finding (pool-live) even with matching measurements", async () => {
      const d = await acceptedDevice("S19k", "2.0.0");
      await services.service.registerReferenceValues(OPERATOR, { model: "S19k", firmwareVersion: "2.0.0", measurements: good.map(({ path, sha256, size }) => ({ path, sha256, size })) });
      expect((await services.deviceSide.onEvidence(d.evidence(good, null, { findings: [] }))).status).toBe("affirming");
      const hijack = {
        guard: "pool-live",
        claim: "configuration" as const,
        tier: "contraindicated" as const,
        subject: "stratum+tcp://evil.example:3333",
        expected: ["stratum+tcp://pool.example:3333"],
        seen: "stratum+tcp://evil.example:3333",
        message: "active pool is not allowed by policy",
      };
      const result = await services.deviceSide.onEvidence(d.evidence(good, null, { reason: "guard", findings: [hijack] }));
      expect(result).toMatchObject({ status: "contraindicated", differences: [], findings: [hijack] });
      expect(result.trustworthiness.configuration).toBe("contraindicated");
      expect(await services.service.getDevice(d.id)).toMatchObject({ appraisal: "contraindicated", containment: "quarantine_requested" });
      const quarantine = publisher.of(d.id, "command").at(-1) as Command;
      expect(quarantine).toMatchObject({ action: "quarantine", params: { reason: expect.stringContaining("pool-live") } });

      // Released by an operator: the same finding again does not re-quarantine; a new contraindicated one does.
      await services.deviceSide.onAck(d.ack(quarantine));
      await services.service.release(OPERATOR, [d.id], "pool fixed by hand");
      await services.deviceSide.onAck(d.ack(publisher.of(d.id, "command").at(-1) as Command));
      await services.deviceSide.onEvidence(d.evidence(good, null, { reason: "guard", findings: [{ ...hijack, message: "reworded" }] }));
      expect((await services.service.getDevice(d.id)).containment).toBe("none");
      const warning = { guard: "api-exposure", claim: "configuration" as const, tier: "warning" as const, subject: "api-allow", seen: "W:0/0", message: "wide" };
      await services.deviceSide.onEvidence(d.evidence(good, null, { reason: "guard", findings: [hijack, warning] }));
      expect((await services.service.getDevice(d.id)).containment).toBe("none");
      const backdoor = { guard: "connection", claim: "runtime-opaque" as const, tier: "contraindicated" as const, subject: "203.0.113.9:7000", message: "unknown outbound" };
      const worse = await services.deviceSide.onEvidence(d.evidence(good, null, { reason: "guard", findings: [hijack, warning, backdoor] }));
      expect(worse.trustworthiness["runtime-opaque"]).toBe("contraindicated");
      expect((await services.service.getDevice(d.id)).containment).toBe("quarantine_requested");
    });

    it("buffers heartbeats, marks silent devices stale, and leaves stale on the next appraisal", async () => {
      const d = await acceptedDevice();
      await services.deviceSide.onEvidence(d.evidence(good));
      const session = d.session();
      await services.deviceSide.onHeartbeat(d.heartbeat(session, 1, { telemetry: { hashrateGhs: 95000 } }), session);
      await services.deviceSide.flush();
      const view = await services.service.getDevice(d.id);
      expect(view.telemetry).toEqual({ hashrateGhs: 95000 });
      expect(view.lastSeenAt).toBe(new Date(clock).toISOString());
      clock += OPTIONS.staleAfterMs + 1;
      await services.deviceSide.markStaleDevices();
      expect((await services.service.getDevice(d.id)).appraisal).toBe("stale");
      expect((await services.service.history(d.id, 1))[0]).toMatchObject({ from: "warning", to: "stale", actor: { kind: "system" } });
      await services.deviceSide.onEvidence(d.evidence(good));
      expect((await services.service.getDevice(d.id)).appraisal).toBe("warning");
    });

    it("HW-FAULT-11: a step of the plane's clock marks no device stale by itself; a device silent since before a backward step still goes stale", async () => {
      const HOURS_3 = 3 * 3_600_000;
      const window = OPTIONS.staleAfterMs;
      let mono = 0; // the plane's monotonic clock: real elapsed time, never stepped
      const stepping = createServices({ db: harness.db, publisher, commandKey, logger, now: () => clock, monotonicNow: () => mono, options: OPTIONS });
      const elapse = (ms: number) => ((clock += ms), (mono += ms));
      const beat = async (d: Awaited<ReturnType<typeof acceptedDevice>>, seq: number) => {
        const session = d.session();
        await stepping.deviceSide.onHeartbeat(d.heartbeat(session, seq), session);
        await stepping.deviceSide.flush();
      };
      const appraisal = async (d: { id: string }) => (await services.service.getDevice(d.id)).appraisal;
      try {
        const alive = await acceptedDevice();
        const silent = await acceptedDevice();
        for (const d of [alive, silent]) await services.deviceSide.onEvidence(d.evidence(good));
        await beat(alive, 1);
        await beat(silent, 1);
        await stepping.deviceSide.markStaleDevices(); // the guard learns how the two clocks relate

        const quarantined = await acceptedDevice();
        await services.service.quarantine(OPERATOR, [quarantined.id], "in flight across the step");
        const nonce = `step-${randomBytes(6).toString("hex")}`; // a connect token used a second ago, valid 5 more minutes
        await harness.db.insert(connectTokenNonces).values({ nonce, deviceId: quarantined.id, expiresAt: new Date(clock + 300_000) });
        const nonceKept = async () => (await harness.db.select().from(connectTokenNonces).where(eq(connectTokenNonces.nonce, nonce))).length === 1;

        // Forward 3 h in one second of real time: both were heard a second ago, neither is stale; the quarantine
        // in flight is not expired by the step.
        clock += HOURS_3;
        mono += 1000;
        await stepping.deviceSide.markStaleDevices();
        await stepping.deviceSide.retryPendingCommands();
        expect([await appraisal(alive), await appraisal(silent)]).toEqual(["warning", "warning"]);
        expect((await services.service.getDevice(quarantined.id)).containment).toBe("quarantine_requested");
        expect(await nonceKept()).toBe(true); // HW-AUTH-1: not forgotten because the clock jumped past its expiry
        elapse(window / 2);
        await beat(alive, 2); // heard on the new clock
        await stepping.deviceSide.markStaleDevices();
        expect(await appraisal(silent)).toBe("warning"); // still inside its window on the new clock
        elapse(window / 2 + 1);
        await stepping.deviceSide.markStaleDevices();
        expect([await appraisal(alive), await appraisal(silent)]).toEqual(["warning", "stale"]); // only real silence counts
        await stepping.deviceSide.retryPendingCommands(); // a full window later on the new clock: now it expires
        expect((await services.service.getDevice(quarantined.id)).containment).toBe("none");
        expect(await nonceKept()).toBe(false);

        // Back 3 h: `alive` was last seen "in the future" and then goes silent; it must not stay warning for 3 h.
        clock -= HOURS_3;
        mono += 1000;
        await stepping.deviceSide.markStaleDevices();
        expect(await appraisal(alive)).toBe("warning");
        elapse(window + 1);
        await stepping.deviceSide.markStaleDevices();
        expect(await appraisal(alive)).toBe("stale");
        expect((await services.service.history(alive.id, 1))[0]).toMatchObject({ to: "stale", reason: expect.stringMatching(/in the plane's future/) });
      } finally {
        await stepping.close();
      }
    });

    it("keeps heartbeat telemetry for the dashboard's charts at most once per sample interval", async () => {
      const d = await acceptedDevice();
      const session = d.session();
      const telemetry = (hashrateGhs: number) => ({ telemetry: { hashrateGhs, temperaturesC: [60, 61], fanRpm: [5000, 5100, 0], activePool: "stratum+tcp://pool.example.net:3333" } });
      const since = new Date(clock - 1);
      await services.deviceSide.onHeartbeat(d.heartbeat(session, 1, telemetry(90_000)), session);
      await services.deviceSide.flush();
      clock += 1000;
      await services.deviceSide.onHeartbeat(d.heartbeat(session, 2, telemetry(91_000)), session);
      await services.deviceSide.flush();
      clock += 300_000; // the default telemetrySampleMs
      await services.deviceSide.onHeartbeat(d.heartbeat(session, 3, telemetry(0)), session);
      await services.deviceSide.flush();
      const samples = await telemetryHistory(harness.db as Database, d.id, since);
      expect(samples.map((s) => [s.at.getTime() - since.getTime() - 1, s.hashrateGhs])).toEqual([[0, 90_000], [301_000, 0]]);
      expect(samples[0]).toMatchObject({ temperaturesC: [60, 61], fanRpm: [5000, 5100, 0], activePool: "stratum+tcp://pool.example.net:3333" });
    });

    describe("liveness only from signed messages (HW-LIVE-1)", () => {
      async function expectRefused(work: Promise<unknown>, reason: LivenessRefusal["reason"]) {
        const error = await work.then(() => null, (e: unknown) => e);
        expect(error).toBeInstanceOf(LivenessRefusal);
        expect((error as LivenessRefusal).reason).toBe(reason);
      }

      it("a heartbeat that is forged, for another connection, replayed or off-clock changes nothing; a signed one counts", async () => {
        const d = await acceptedDevice();
        await services.deviceSide.onEvidence(d.evidence(good));
        const seenAt = (await services.service.getDevice(d.id)).lastSeenAt;
        const session = d.session();
        const other = d.session();
        const thief = generateKeyPair();
        const fake = { telemetry: { hashrateGhs: 1 } };
        clock += 1000;
        await expectRefused(services.deviceSide.onHeartbeat(d.heartbeat(session, 1, fake, thief), session), "bad-signature");
        const tampered = { ...d.heartbeat(session, 1), telemetry: { hashrateGhs: 1 } };
        await expectRefused(services.deviceSide.onHeartbeat(tampered, session), "bad-signature");
        await expectRefused(services.deviceSide.onHeartbeat(d.heartbeat(other, 1, fake), session), "wrong-connection");
        await expectRefused(services.deviceSide.onHeartbeat(d.heartbeat(session, 1, { ...fake, ts: clock - 5 * 60_000 - 1 }), session), "clock");
        await expectRefused(services.deviceSide.onHeartbeat(d.heartbeat(session, 1, { ...fake, ts: clock + 5 * 60_000 + 1 }), session), "clock");
        expect(session.lastHeartbeatSeq).toBe(-1);
        await services.deviceSide.flush();
        expect(await services.service.getDevice(d.id)).toMatchObject({ lastSeenAt: seenAt, telemetry: null });

        await services.deviceSide.onHeartbeat(d.heartbeat(session, 7, { telemetry: { hashrateGhs: 95000 } }), session);
        expect(session.lastHeartbeatSeq).toBe(7);
        await services.deviceSide.flush();
        expect(await services.service.getDevice(d.id)).toMatchObject({ lastSeenAt: new Date(clock).toISOString(), telemetry: { hashrateGhs: 95000 } });

        // Replays: the same seq or a lower one, even correctly signed, on this connection.
        clock += 1000;
        await expectRefused(services.deviceSide.onHeartbeat(d.heartbeat(session, 7, fake), session), "replay");
        await expectRefused(services.deviceSide.onHeartbeat(d.heartbeat(session, 3, fake), session), "replay");
        await services.deviceSide.flush();
        expect(await services.service.getDevice(d.id)).toMatchObject({ lastSeenAt: new Date(clock - 1000).toISOString(), telemetry: { hashrateGhs: 95000 } });
      });

      it("a device whose session is held by a party without its key goes stale", async () => {
        const d = await acceptedDevice();
        await services.deviceSide.onEvidence(d.evidence(good));
        const session = d.session();
        await services.deviceSide.onHeartbeat(d.heartbeat(session, 1), session);
        await services.deviceSide.flush();
        // A thief connects with a harvested token: the CONNECT itself is no sign of life.
        const stolen = d.session();
        const thief = generateKeyPair();
        for (let step = 1; step <= 4; step++) {
          clock += OPTIONS.staleAfterMs / 4;
          await services.deviceSide.onConnected(d.id);
          await expectRefused(services.deviceSide.onHello(d.hello(stolen, {}, thief), stolen), "bad-signature");
          await expectRefused(services.deviceSide.onHeartbeat(d.heartbeat(stolen, step + 1, {}, thief), stolen), "bad-signature");
          // The device's own heartbeats, replayed by the thief on its connection, do not count either.
          await expectRefused(services.deviceSide.onHeartbeat(d.heartbeat(session, step + 1), stolen), "wrong-connection");
        }
        clock += 1;
        await services.deviceSide.markStaleDevices();
        const view = await services.service.getDevice(d.id);
        expect(view).toMatchObject({ appraisal: "stale", connected: true, firmwareVersion: "1.2.0" });
        expect((await services.service.history(d.id, 1))[0]).toMatchObject({ to: "stale", actor: { kind: "system", id: "staleness" } });
      });

      it("a forged hello records nothing and triggers no commands or challenge", async () => {
        const d = await acceptedDevice();
        await services.service.quarantine(OPERATOR, [d.id], "suspect");
        const before = await services.service.getDevice(d.id);
        const session = d.session();
        publisher.sent = [];
        await expectRefused(services.deviceSide.onHello(d.hello(session, { firmwareVersion: "9.9.9", bootId: "forged" }, generateKeyPair()), session), "bad-signature");
        await expectRefused(services.deviceSide.onHello(d.hello(d.session(), { firmwareVersion: "9.9.9" }), session), "wrong-connection");
        await expectRefused(services.deviceSide.onHello(d.hello(session, { firmwareVersion: "9.9.9", ts: clock - 5 * 60_000 - 1 }), session), "clock");
        expect(publisher.sent).toEqual([]);
        expect(await services.service.getDevice(d.id)).toMatchObject({ firmwareVersion: before.firmwareVersion, lastSeenAt: before.lastSeenAt });
        clock += 1000;
        await services.deviceSide.onHello(d.hello(session, { firmwareVersion: "1.2.1" }), session);
        expect(publisher.sent.map((sent) => sent.kind)).toEqual(["command", "challenge"]);
        expect(await services.service.getDevice(d.id)).toMatchObject({ firmwareVersion: "1.2.1", lastSeenAt: new Date(clock).toISOString() });
      });
    });

    describe("HW-APPRAISE-3: appraisal under containment", () => {
      const ALL_SEEN: Evidence["observations"] = { "miner-api": { observed: true }, sockets: { observed: true }, config: { observed: true }, indicators: { observed: true } };
      const MINER_STOPPED: Evidence["observations"] = { ...ALL_SEEN, "miner-api": { observed: false, reason: "miner stopped (quarantined); unreachable" } };
      const hijack = {
        guard: "pool-live",
        claim: "configuration" as const,
        tier: "contraindicated" as const,
        subject: "stratum+tcp://hijack.example.org:443",
        seen: { url: "stratum+tcp://hijack.example.org:443", user: "thief.w1", active: true },
        message: "live pool not allowed",
      };
      const lastCommand = (id: string) => publisher.of(id, "command").at(-1) as Command;

      it("a quarantined device never returns to trusted on evidence that could not see the cause; observed evidence after release does", async () => {
        const d = await acceptedDevice("S21", "1.0.0");
        await services.service.registerReferenceValues(OPERATOR, { model: "S21", firmwareVersion: "1.0.0", measurements: good.map(({ path, sha256, size }) => ({ path, sha256, size })) });
        expect((await services.deviceSide.onEvidence(d.evidence(good, null, { observations: ALL_SEEN }))).status).toBe("affirming");
        expect((await services.deviceSide.onEvidence(d.evidence(good, null, { reason: "guard", findings: [hijack], observations: ALL_SEEN }))).status).toBe("contraindicated");
        const quarantine = lastCommand(d.id);
        expect(quarantine.action).toBe("quarantine");
        await services.deviceSide.onAck(d.ack(quarantine));
        expect((await services.service.getDevice(d.id)).containment).toBe("quarantined");

        // The miner is stopped: its API refuses, the guards report no live pools and say so.
        const commandsBefore = publisher.of(d.id, "command").length;
        for (const observations of [MINER_STOPPED, undefined]) {
          const blind = await services.deviceSide.onEvidence(d.evidence(good, null, { reason: "guard", findings: [], ...(observations ? { observations } : {}) }));
          expect(blind.status).toBe("contraindicated");
          expect(blind.findings).toEqual([hijack]);
          expect(blind.underContainment?.held).toEqual([hijack]);
          const view = await services.service.getDevice(d.id);
          expect(view.appraisal).toBe("contraindicated");
          expect(view.lastAppraisal?.summary).toMatch(/under containment \(quarantined\) not observed: miner-api/);
        }
        expect(publisher.of(d.id, "command")).toHaveLength(commandsBefore); // same verdict: no second quarantine

        // The stop failed: the agent says so; still contraindicated.
        const stop = { guard: "miner-stop", claim: "runtime-opaque" as const, tier: "contraindicated" as const, subject: "127.0.0.1:4028", expected: "miner stopped (quarantined)", seen: { activePool: hijack.subject }, message: "the stop failed" };
        const failed = await services.deviceSide.onEvidence(d.evidence(good, null, { reason: "guard", findings: [hijack, stop], observations: ALL_SEEN }));
        expect(failed.findings.map((f) => f.guard)).toEqual(["miner-stop", "pool-live"]);
        expect((await services.service.getDevice(d.id)).appraisal).toBe("contraindicated");

        // Released: the miner runs again, the guards see a clean pool: trusted.
        await services.service.release(OPERATOR, [d.id], "pool restored by hand");
        await services.deviceSide.onAck(d.ack(lastCommand(d.id)));
        expect((await services.service.getDevice(d.id)).containment).toBe("none");
        expect((await services.deviceSide.onEvidence(d.evidence(good, null, { reason: "guard", findings: [], observations: ALL_SEEN }))).status).toBe("affirming");
        expect((await services.service.getDevice(d.id)).appraisal).toBe("trusted");
      });

      it("an operator quarantine of a clean device: blind evidence reads warning, never trusted", async () => {
        const d = await acceptedDevice("S21", "1.0.0");
        expect((await services.deviceSide.onEvidence(d.evidence(good, null, { observations: ALL_SEEN }))).status).toBe("affirming");
        await services.service.quarantine(OPERATOR, [d.id], "suspect");
        await services.deviceSide.onAck(d.ack(lastCommand(d.id)));
        const blind = await services.deviceSide.onEvidence(d.evidence(good, null, { reason: "guard", observations: MINER_STOPPED }));
        expect(blind.status).toBe("warning");
        expect(blind.trustworthiness["runtime-opaque"]).toBe("warning");
        expect((await services.service.getDevice(d.id)).appraisal).toBe("warning");
      });
    });

    describe("HW-EVD-2: a sequence reset from a known key", () => {
      async function trustedDevice(model: string) {
        const d = await acceptedDevice(model, "1.0.0");
        await services.service.registerReferenceValues(OPERATOR, { model, firmwareVersion: "1.0.0", measurements: good.map(({ path, sha256, size }) => ({ path, sha256, size })) });
        for (let i = 0; i < 3; i++) {
          clock += 1000;
          await services.deviceSide.onEvidence(d.evidence(good));
        }
        expect((await services.service.getDevice(d.id)).appraisal).toBe("trusted");
        return d;
      }
      const challengesTo = (id: string) => publisher.of(id, "challenge") as Challenge[];

      it("holds the verdict as unknown (stored transition), challenges at once, and accepts only a fresh challenge answer; replays stay refused", async () => {
        const d = await trustedDevice("S23");
        const captured = d.evidence(good); // seq 4, never delivered... yet
        clock += 1000;
        await services.deviceSide.onEvidence(d.evidence(good)); // seq 5
        // A replay of an old, accepted evidence changes nothing (not signed after the last accepted one).
        const before = await counts();
        await expect(services.deviceSide.onEvidence(captured)).rejects.toThrow(/not above the last accepted 5 \(replay\)$/);
        expect(await counts()).toEqual(before);
        expect((await services.service.getDevice(d.id)).appraisal).toBe("trusted");

        // The agent lost state.json: its seq starts again at 1, signed now.
        clock += 1000;
        const beforeReset = clock;
        const sent = challengesTo(d.id).length;
        await expect(services.deviceSide.onEvidence(d.evidence(good, null, { seq: 1, reason: "startup" }))).rejects.toThrow(/sequence reset noted, challenge sent/);
        const view = await services.service.getDevice(d.id);
        expect(view.appraisal).toBe("unknown");
        const [hold] = await services.service.history(d.id, 1);
        expect(hold).toMatchObject({ machine: "appraisal", from: "trusted", to: "unknown", actor: { kind: "system", id: "sequence" } });
        expect(hold?.reason).toMatch(/^sequence reset: evidence seq 1 is not above the last accepted 5/);
        expect(challengesTo(d.id)).toHaveLength(sent + 1);
        const challenge = challengesTo(d.id).at(-1)!;

        // While held: no unsolicited evidence counts, whatever its seq; old ones neither; a made-up nonce neither.
        clock += 1000;
        await expect(services.deviceSide.onEvidence(d.evidence(good, null, { seq: 2 }))).rejects.toThrow(/waits for a challenge answer/);
        await expect(services.deviceSide.onEvidence(d.evidence(good, null, { seq: 99 }))).rejects.toThrow(/waits for a challenge answer/);
        await expect(services.deviceSide.onEvidence(captured)).rejects.toBeInstanceOf(FreshnessError);
        await expect(services.deviceSide.onEvidence(d.evidence(good, "B".repeat(32), { seq: 3 }))).rejects.toThrow(/was not issued/);
        expect((await services.service.getDevice(d.id)).appraisal).toBe("unknown");

        // The fresh challenge answer re-bases the sequence and is appraised (here: a changed config).
        const tampered = good.map((m) => (m.path === "/config/cgminer.conf" ? { ...m, sha256: B, size: 11 } : m));
        const answer = d.evidence(tampered, challenge.nonce, { seq: 4, reason: "challenge" });
        expect((await services.deviceSide.onEvidence(answer)).status).toBe("contraindicated");
        const [rebased] = await services.service.history(d.id, 10).then((h) => h.filter((t) => t.machine === "appraisal"));
        expect(rebased).toMatchObject({ from: "unknown", to: "contraindicated" });
        expect(rebased?.reason).toMatch(/^fresh challenge answer after a sequence reset \(evidence epoch 1\)/);
        // The nonce is spent; evidence signed before the re-base (the lost sequence) is a replay even above seq 4.
        await expect(services.deviceSide.onEvidence(answer)).rejects.toBeInstanceOf(FreshnessError);
        await expect(services.deviceSide.onEvidence(d.evidence(good, challenge.nonce, { seq: 9 }))).rejects.toThrow(/already used/);
        await expect(services.deviceSide.onEvidence(d.evidence(good, null, { seq: 10, ts: beforeReset }))).rejects.toThrow(/older than the sequence reset/);
        clock += 1000;
        // The new sequence goes on (the policy quarantined the changed config, so this is appraised under containment).
        expect(await services.deviceSide.onEvidence(d.evidence(good, null, { seq: 5 }))).toMatchObject({ evidenceSeq: 5, underContainment: { containment: "quarantine_requested" } });
      });

      it("a challenge answer that shows the reset first re-bases at once; a contraindicated verdict is never cleared by a reset", async () => {
        const d = await trustedDevice("S25");
        const { nonce } = await services.service.attestNow(OPERATOR, d.id);
        clock += 1000;
        expect((await services.deviceSide.onEvidence(d.evidence(good, nonce, { seq: 2, reason: "challenge" }))).status).toBe("affirming");
        const appraisal = (await services.service.history(d.id, 10)).filter((t) => t.machine === "appraisal").map((t) => `${t.from}->${t.to}`);
        expect(appraisal.slice(0, 2)).toEqual(["unknown->trusted", "trusted->unknown"]);

        const bad = await trustedDevice("S27");
        clock += 1000;
        const tampered = good.map((m) => (m.path === "/config/cgminer.conf" ? { ...m, sha256: B, size: 11 } : m));
        await services.deviceSide.onEvidence(bad.evidence(tampered));
        expect((await services.service.getDevice(bad.id)).appraisal).toBe("contraindicated");
        clock += 1000;
        await expect(services.deviceSide.onEvidence(bad.evidence(good, null, { seq: 1 }))).rejects.toThrow(/sequence reset noted/);
        expect((await services.service.getDevice(bad.id)).appraisal).toBe("contraindicated");
        await expect(services.deviceSide.onEvidence(bad.evidence(good, null, { seq: 2 }))).rejects.toThrow(/waits for a challenge answer/);
      });

      it("a challenge answer that merely arrived after a later evidence (signed before it) is no reset: refused as before", async () => {
        const d = await trustedDevice("S33");
        const { nonce } = await services.service.attestNow(OPERATOR, d.id);
        const answer = d.evidence(good, nonce, { reason: "challenge" }); // seq 4, signed first
        clock += 1000;
        await services.deviceSide.onEvidence(d.evidence(good)); // seq 5 overtakes it
        await expect(services.deviceSide.onEvidence(answer)).rejects.toThrow(/not above the last accepted 5 \(replay\)$/);
        expect((await services.service.getDevice(d.id)).appraisal).toBe("trusted");
        expect((await services.service.history(d.id, 10)).some((t) => /sequence reset/.test(t.reason))).toBe(false);
      });

      it("a hello below the highest acked command seq is a reset too: held at unknown, challenged", async () => {
        const d = await trustedDevice("S29");
        await services.service.quarantine(OPERATOR, [d.id], "drill");
        await services.deviceSide.onAck(d.ack(publisher.of(d.id, "command").at(-1) as Command));
        const session = d.session();
        const hello = { model: "S29", firmwareVersion: "1.0.0", agentVersion: "0.1.0", bootId: "boot-2", containment: "quarantined" as const };
        await services.deviceSide.onHello(d.hello(session, { ...hello, lastCommandSeq: 1 }), session); // intact state: nothing happens
        expect((await services.service.getDevice(d.id)).appraisal).not.toBe("unknown");
        const sent = challengesTo(d.id).length;
        await services.deviceSide.onHello(d.hello(session, { ...hello, lastCommandSeq: 0 }), session);
        expect((await services.service.getDevice(d.id)).appraisal).toBe("unknown");
        expect((await services.service.history(d.id, 1))[0]?.reason).toMatch(/^sequence reset: agent reports lastCommandSeq 0 below the acked 1/);
        expect(challengesTo(d.id)).toHaveLength(sent + 1);
        clock += 1000;
        await expect(services.deviceSide.onEvidence(d.evidence(good, null, { seq: 1, reason: "startup" }))).rejects.toThrow(/waits for a challenge answer/);
      });

      it("HW-Q-1: a quarantined device whose agent lost its state (hello says none) is sent the quarantine again", async () => {
        const d = await trustedDevice("S31");
        await services.service.quarantine(OPERATOR, [d.id], "drill");
        const first = publisher.of(d.id, "command").at(-1) as Command;
        await services.deviceSide.onAck(d.ack(first));
        expect((await services.service.getDevice(d.id)).containment).toBe("quarantined");
        publisher.sent = [];
        const session = d.session();
        await services.deviceSide.onHello(d.hello(session, { model: "S31", firmwareVersion: "1.0.0", agentVersion: "0.1.0", bootId: "boot-3", containment: "none", lastCommandSeq: 0 }), session);
        const view = await services.service.getDevice(d.id);
        expect(view).toMatchObject({ containment: "quarantine_requested", appraisal: "unknown" });
        const again = publisher.of(d.id, "command") as Command[];
        expect(again.map((c) => [c.action, c.seq])).toEqual([["quarantine", first.seq + 1]]);
        expect(publisher.sent.map((s) => s.kind)).toEqual(["command", "challenge"]);
        const containment = (await services.service.history(d.id, 10)).filter((t) => t.machine === "containment");
        expect(containment[0]).toMatchObject({ from: "quarantined", to: "quarantine_requested", actor: { kind: "system", id: "sequence" } });
        expect(containment[0]?.reason).toMatch(/agent state lost/);
        await services.deviceSide.onAck(d.ack(again[0]!));
        expect((await services.service.getDevice(d.id)).containment).toBe("quarantined");
      });
    });

    it("stores each device event once", async () => {
      const d = await acceptedDevice();
      const event = signObject(
        { v: 1 as const, type: "event" as const, deviceId: d.id, id: "evt-00000001", ts: clock, kind: "command-rejected" as const, severity: "warning" as const, detail: { reason: "replay" } },
        d.keys.privateKey,
      );
      await services.deviceSide.onEvent(event);
      await services.deviceSide.onEvent(event);
      const events = await services.service.listEvents(d.id, 10);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ id: "evt-00000001", kind: "command-rejected", detail: { reason: "replay" } });
    });

    it("lists devices with filters", async () => {
      const d = await acceptedDevice("L7", "1.0.0");
      const byModel = await services.service.listDevices({ model: "L7", limit: 10, offset: 0 });
      expect(byModel.map((v) => v.deviceId)).toEqual([d.id]);
      const pending = await services.service.listDevices({ enrollment: "pending", limit: 1000, offset: 0 });
      expect(pending.every((v) => v.enrollment === "pending")).toBe(true);
    });

    it("quarantines 1,000 devices in one call (speed: bench/quarantine-fanout.ts)", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 1000; i++) ids.push(deviceIdFromPublicKey(generateKeyPair().publicKey));
      const t = new Date(clock);
      for (let i = 0; i < ids.length; i += 500) {
        await harness.db.execute(
          sql`insert into devices (id, public_key, model, enrollment, created_at, updated_at) values ${sql.join(
            ids.slice(i, i + 500).map((id) => sql`(${id}, ${id}, ${"bulk"}, ${"accepted"}, ${t.toISOString()}::timestamptz, ${t.toISOString()}::timestamptz)`),
            sql`, `,
          )}`,
        );
      }
      const views = await services.service.quarantine(OPERATOR, ids, "fleet-wide incident");
      expect(views).toHaveLength(1000);
      expect(new Set(views.map((v) => v.status))).toEqual(new Set(["pending"]));
      const quarantined = await services.service.listDevices({ model: "bulk", containment: "quarantine_requested", limit: 2000, offset: 0 });
      expect(quarantined).toHaveLength(1000);
    });
  });
}

onEveryDatabase("ControlPlaneService contract", contract);

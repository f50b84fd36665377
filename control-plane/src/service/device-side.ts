/**
 * DeviceSideService: what the broker ingest calls for messages that passed topic ACL and schema parsing.
 * Signatures and freshness are checked here; a refusal throws before anything is written, or inside the
 * transaction so that it rolls back (nothing changes on refusal).
 */
import { and, desc, eq, inArray, lt } from "drizzle-orm";
import { fromBase64Url, verifyBytesFast, verifySignedObject } from "../../../shared/crypto/index.js";
import { FreshnessError, VerificationError } from "../../../shared/errors/index.js";
import type { Ack, DeviceEvent, Evidence, Heartbeat, Hello } from "../../../shared/protocol/index.js";
import { appraise, verdictKey } from "../appraisal/index.js";
import { challenges, commands, connectTokenNonces, deviceEvents, devices, evidence as evidenceTable, referenceValueSets } from "../db/index.js";
import { APPRAISAL_TABLE, appraisalEventFor, transition } from "../trust/index.js";
import { expireCommands, issueContainment, pendingCommands, publishCommands } from "./commands.js";
import { recordPlaneEvents } from "../events/record.js";
import { type DeviceRow, lockDevice, MAX_CLOCK_DIFFERENCE_MS, recordTransitions, type ServiceContext, type TransitionRecord } from "./context.js";
import { AckBatcher } from "./acks.js";
import { HeartbeatBuffer } from "./heartbeats.js";
import { insertChallenge, publishChallenge } from "./operator.js";
import type { Actor, AppraisalState, AttestationResult, DeviceSideService, EnrollmentState } from "./types.js";

const CHALLENGE_RETENTION_MS = 60 * 60_000;
const POLICY_ACTOR: Actor = { kind: "system", id: "policy" };
const STALE_FROM: AppraisalState[] = APPRAISAL_TABLE.filter((edge) => edge.event === "stale-timer").map((edge) => edge.from);

export function createDeviceSideService(ctx: ServiceContext): DeviceSideService & { close(): Promise<void> } {
  const { db } = ctx;
  const heartbeats = new HeartbeatBuffer(ctx);
  const acks = new AckBatcher(ctx);

  /** The enrolled key of a device, for signature checks; unknown devices fail closed. */
  async function deviceFor(deviceId: string): Promise<{ row: DeviceRow; key: Uint8Array }> {
    const [row] = await db.select().from(devices).where(eq(devices.id, deviceId));
    if (!row) throw new VerificationError(`device ${deviceId} is not enrolled`);
    return { row, key: fromBase64Url(row.publicKey) };
  }

  async function verifiedFrom(message: Evidence | DeviceEvent | Ack): Promise<DeviceRow> {
    const { row, key } = await deviceFor(message.deviceId);
    verifySignedObject(message, key, verifyBytesFast); // HW-SIG-1
    if (row.enrollment !== "accepted") throw new VerificationError(`device ${row.id} is ${row.enrollment}, not accepted`);
    return row;
  }

  return {
    async identityForConnect(deviceId) {
      const [row] = await db
        .select({ deviceId: devices.id, publicKey: devices.publicKey, enrollment: devices.enrollment })
        .from(devices)
        .where(eq(devices.id, deviceId));
      return row ? { deviceId: row.deviceId, publicKey: row.publicKey, enrollment: row.enrollment as EnrollmentState } : null;
    },

    async rememberConnectNonce(deviceId, nonce, expiresAtMs) {
      // HW-AUTH-1: one use per token nonce, across restarts and replicas.
      const inserted = await db
        .insert(connectTokenNonces)
        .values({ nonce, deviceId, expiresAt: new Date(expiresAtMs) })
        .onConflictDoNothing()
        .returning({ nonce: connectTokenNonces.nonce });
      return inserted.length > 0;
    },

    async onConnected(deviceId) {
      const at = new Date(ctx.now());
      await db.update(devices).set({ connected: true, lastSeenAt: at }).where(eq(devices.id, deviceId));
    },

    async onDisconnected(deviceId) {
      await db.update(devices).set({ connected: false }).where(eq(devices.id, deviceId));
    },

    async onHello(hello: Hello) {
      const now = ctx.now();
      const at = new Date(now);
      const result = await db.transaction(async (tx) => {
        const [row] = await tx
          .update(devices)
          .set({
            firmwareVersion: hello.firmwareVersion,
            agentVersion: hello.agentVersion,
            bootId: hello.bootId,
            connected: true,
            lastSeenAt: at,
            updatedAt: at,
          })
          .where(and(eq(devices.id, hello.deviceId), eq(devices.enrollment, "accepted")))
          .returning({ id: devices.id, containment: devices.containment });
        if (!row) return null;
        if (row.containment !== hello.containment && !row.containment.endsWith("_requested")) {
          ctx.logger.warn({ deviceId: hello.deviceId, plane: row.containment, device: hello.containment }, "device reports a containment the plane did not record");
        }
        const pending = await pendingCommands(tx, [hello.deviceId], now);
        const challenge = await insertChallenge(ctx, tx, hello.deviceId, now);
        return { pending, challenge };
      });
      if (!result) return;
      // Commands first, in seq order, so the agent sees them before it answers the challenge.
      await publishCommands(ctx, result.pending);
      await publishChallenge(ctx, result.challenge);
    },

    async onHeartbeat(heartbeat: Heartbeat) {
      heartbeats.add(heartbeat);
    },

    async onEvidence(evidence: Evidence): Promise<AttestationResult> {
      const before = await verifiedFrom(evidence);
      const now = ctx.now();
      const at = new Date(now);
      const outcome = await db.transaction(async (tx) => {
        const device = (await lockDevice(tx, before.id)) as DeviceRow;
        if (device.enrollment !== "accepted") throw new VerificationError(`device ${device.id} is ${device.enrollment}, not accepted`);
        // HW-EVD-1: seq must exceed the last accepted one, always.
        if (evidence.seq <= device.lastEvidenceSeq) {
          throw new FreshnessError(`evidence seq ${evidence.seq} is not above the last accepted ${device.lastEvidenceSeq} (replay)`);
        }
        if (evidence.nonce !== null) {
          // HW-EVD-1: the nonce is one we issued to this device, unused and unexpired.
          const [challenge] = await tx.select().from(challenges).where(eq(challenges.nonce, evidence.nonce)).for("update");
          if (!challenge || challenge.deviceId !== device.id) throw new FreshnessError(`evidence nonce ${evidence.nonce} was not issued to ${device.id}`);
          if (challenge.usedAt) throw new FreshnessError(`evidence nonce ${evidence.nonce} was already used`);
          if (challenge.expiresAt <= at) throw new FreshnessError(`evidence nonce ${evidence.nonce} expired at ${challenge.expiresAt.toISOString()}`);
          await tx.update(challenges).set({ usedAt: at }).where(eq(challenges.nonce, evidence.nonce));
        } else if (Math.abs(now - evidence.ts) > MAX_CLOCK_DIFFERENCE_MS) {
          throw new FreshnessError(`unsolicited evidence ts ${evidence.ts} is more than 5 minutes from now (${now})`);
        }

        // The evidence's own (signed) model and version pick the reference values, not what enrollment said.
        const [reference] = await tx
          .select()
          .from(referenceValueSets)
          .where(
            and(
              eq(referenceValueSets.model, evidence.model),
              eq(referenceValueSets.firmwareVersion, evidence.firmwareVersion),
              eq(referenceValueSets.status, "approved"),
            ),
          )
          .orderBy(desc(referenceValueSets.approvedAt))
          .limit(1);
        const result = appraise(
          evidence,
          reference ? { id: reference.id, model: reference.model, firmwareVersion: reference.firmwareVersion, measurements: reference.measurements as never } : null,
          now,
        );

        await tx.insert(evidenceTable).values({
          deviceId: device.id,
          seq: evidence.seq,
          nonce: evidence.nonce,
          reason: evidence.reason,
          ts: new Date(evidence.ts),
          receivedAt: at,
          payload: evidence,
          result,
        });
        const from = device.appraisal as AppraisalState;
        const to = transition("appraisal", from, appraisalEventFor(result.status));
        const [updated] = await tx
          .update(devices)
          .set({
            appraisal: to,
            lastEvidenceSeq: evidence.seq,
            lastAppraisal: result,
            firmwareVersion: evidence.firmwareVersion,
            agentVersion: evidence.agentVersion,
            bootId: evidence.bootId,
            lastSeenAt: at,
            updatedAt: at,
          })
          .where(eq(devices.id, device.id))
          .returning();
        const actor: Actor = { kind: "device", id: device.id };
        if (from !== to) {
          await recordTransitions(tx, [{ deviceId: device.id, machine: "appraisal", from, to, reason: result.summary, actor, evidence: result }], at);
        }

        // Policy: contraindicated -> quarantine, when the verdict is new (entered, or different differences or
        // contraindicated guard findings), so an operator's release of a known-bad device sticks until it changes again.
        const previous = device.lastAppraisal as AttestationResult | null;
        const verdictIsNew = from !== "contraindicated" || verdictKey(previous) !== verdictKey(result);
        let toPublish: Awaited<ReturnType<typeof issueContainment>>["toPublish"] = [];
        if (ctx.options.autoQuarantine === "contraindicated" && result.status === "contraindicated" && verdictIsNew && updated) {
          if (updated.containment === "none" || updated.containment === "release_requested") {
            ({ toPublish } = await issueContainment(ctx, tx, [updated], "quarantine", POLICY_ACTOR, `policy: ${result.summary}`, now));
          }
        }
        return { result, toPublish };
      });
      await publishCommands(ctx, outcome.toPublish);
      return outcome.result;
    },

    async onEvent(event: DeviceEvent) {
      await verifiedFrom(event);
      const receivedAt = new Date(ctx.now());
      await db.transaction(async (tx) => {
        const stored = await tx
          .insert(deviceEvents)
          .values({
            deviceId: event.deviceId,
            id: event.id,
            kind: event.kind,
            severity: event.severity,
            ts: new Date(event.ts),
            detail: event.detail,
            receivedAt,
          })
          .onConflictDoNothing()
          .returning({ id: deviceEvents.id });
        // A redelivered guard alert (same outbox id) is stored once and announced once (HW-GUARD-2).
        if (stored.length > 0 && event.kind === "guard-alert") {
          const data = { eventId: event.id, severity: event.severity, ts: event.ts, detail: event.detail as Record<string, unknown> };
          await recordPlaneEvents(tx, [{ kind: "guard.alert", deviceId: event.deviceId, data }], receivedAt);
        }
      });
    },

    async onAck(ack: Ack) {
      await acks.submit(ack);
    },

    async retryPendingCommands() {
      const now = ctx.now();
      await expireCommands(ctx, now);
      // Old challenges only take space: a deleted nonce is refused as "not issued", so this cannot weaken HW-EVD-1.
      await db.delete(challenges).where(lt(challenges.expiresAt, new Date(now - CHALLENGE_RETENTION_MS)));
      // An expired token is refused on its expiry alone, so its nonce no longer needs remembering.
      await db.delete(connectTokenNonces).where(lt(connectTokenNonces.expiresAt, new Date(now)));
      const pending = await pendingCommands(db, null, now);
      await publishCommands(ctx, pending);
    },

    async markStaleDevices() {
      await heartbeats.flush();
      const now = ctx.now();
      const at = new Date(now);
      const cutoff = new Date(now - ctx.options.staleAfterMs);
      await db.transaction(async (tx) => {
        const stale = await tx
          .select({ id: devices.id, appraisal: devices.appraisal, lastSeenAt: devices.lastSeenAt })
          .from(devices)
          .where(and(eq(devices.enrollment, "accepted"), inArray(devices.appraisal, STALE_FROM), lt(devices.lastSeenAt, cutoff)))
          .for("update");
        if (stale.length === 0) return;
        const ids = stale.map((row) => row.id);
        for (let i = 0; i < ids.length; i += 5000) {
          await tx.update(devices).set({ appraisal: "stale", updatedAt: at }).where(inArray(devices.id, ids.slice(i, i + 5000)));
        }
        const actor: Actor = { kind: "system", id: "staleness" };
        const records: TransitionRecord[] = stale.map((row) => ({
          deviceId: row.id,
          machine: "appraisal",
          from: row.appraisal,
          to: transition("appraisal", row.appraisal as AppraisalState, "stale-timer"),
          reason: `not seen since ${row.lastSeenAt?.toISOString()} (more than ${ctx.options.staleAfterMs} ms)`,
          actor,
        }));
        await recordTransitions(tx, records, at);
      });
    },

    flush: () => heartbeats.flush(),

    async close() {
      await heartbeats.close();
    },
  };
}


/**
 * DeviceSideService: what the broker ingest calls for messages that passed topic ACL and schema parsing.
 * Signatures and freshness are checked here; a refusal throws before anything is written, or inside the
 * transaction so that it rolls back (nothing changes on refusal).
 */
import { randomBytes } from "node:crypto";
import { and, desc, eq, gt, gte, inArray, isNotNull, lt, max, or } from "drizzle-orm";
import { fromBase64Url, verifyBytesFast, verifySignedObject } from "../../../shared/crypto/index.js";
import { FreshnessError, VerificationError } from "../../../shared/errors/index.js";
import type { Ack, DeviceEvent, Evidence, Finding, Heartbeat, Hello } from "../../../shared/protocol/index.js";
import { appraise, verdictKey } from "../appraisal/index.js";
import { challenges, commands, connectTokenNonces, deviceEvents, devices, evidence as evidenceTable, referenceValueSets, type Tx } from "../db/index.js";
import { APPRAISAL_TABLE, appraisalEventFor, canTransition, transition } from "../trust/index.js";
import { recordPlaneEvents } from "../events/record.js";
import { insertChallenge, publishChallenge } from "./challenges.js";
import { ClockStepGuard, FUTURE_LAST_SEEN_TOLERANCE_MS } from "./clock-step.js";
import {
  AckBatcher,
  claimForRepublish,
  CommandRetrySchedule,
  expireCommands,
  issueContainment,
  pendingCommands,
  publishCommands,
  reassertQuarantine,
} from "./commands/index.js";
import { MAX_CLOCK_DIFFERENCE_MS, type ServiceContext } from "./context.js";
import { HeartbeatBuffer, verifyLiveness } from "./heartbeats.js";
import { chunks, type DeviceRow, lockDevice, recordTransitions, type TransitionRecord } from "./tx.js";
import type { Actor, AppraisalState, AttestationResult, ConnectIdentity, ContainmentState, DeviceSession, DeviceSideService, EnrollmentState } from "./types.js";

/** HW-AUTH-2: device event kind of a session takeover, and the defaults of its threshold (count within window, ms). */
export const TAKEOVER_EVENT = "session-takeover";
const DEFAULT_TAKEOVER_THRESHOLD = 3;
const DEFAULT_TAKEOVER_WINDOW_MS = 60_000;
/** Appraisals a takeover can worsen to `warning` (contraindicated stays). */
const TAKEOVER_WARNS: readonly AppraisalState[] = ["unknown", "trusted", "stale"];

const CHALLENGE_RETENTION_MS = 60 * 60_000;
const POLICY_ACTOR: Actor = { kind: "system", id: "policy" };
const SEQUENCE_ACTOR: Actor = { kind: "system", id: "sequence" };
const STALE_FROM: AppraisalState[] = APPRAISAL_TABLE.filter((edge) => edge.event === "stale-timer").map((edge) => edge.from);

/**
 * The DeviceSideService over `ctx`, with `ctx.hooks` called at their points (DeviceSideHooks); `close` flushes
 * buffered heartbeats and stops their timer.
 */
export function createDeviceSideService(ctx: ServiceContext): DeviceSideService & { close(): Promise<void> } {
  const { db, hooks } = ctx;

  /** A hook's failure is logged; it never refuses or undoes the device's message (DeviceSideHooks). */
  async function runHook(name: string, deviceId: string, run: () => Promise<void> | void): Promise<void> {
    try {
      await run();
    } catch (error) {
      ctx.logger.error({ err: error, deviceId, hook: name }, "device-side hook failed");
    }
  }
  const heartbeats = new HeartbeatBuffer(ctx);
  const acks = new AckBatcher(ctx);
  const clockSteps = new ClockStepGuard(ctx.now, ctx.monotonicNow, ctx.options.staleAfterMs, ctx.logger);
  const retries = new CommandRetrySchedule();

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

  /**
   * HW-EVD-2: marks a sequence reset on a locked device row: the verdict goes to `unknown` with a stored
   * transition (a contraindicated verdict stays), and unsolicited evidence is refused until a challenge answer.
   * A device already held stays held (its first reason is kept).
   */
  async function holdForSequenceReset(tx: Tx, device: DeviceRow, why: string, at: Date): Promise<void> {
    if (device.sequenceResetAt !== null) return;
    const from = device.appraisal as AppraisalState;
    const to = canTransition("appraisal", from, "sequence-reset") ? transition("appraisal", from, "sequence-reset") : from;
    await tx.update(devices).set({ appraisal: to, sequenceResetAt: at, updatedAt: at }).where(eq(devices.id, device.id));
    const reason = `sequence reset: ${why}; the agent lost its state, verdict held until a fresh challenge answer`;
    await recordTransitions(tx, [{ deviceId: device.id, machine: "appraisal", from, to, reason, actor: SEQUENCE_ACTOR }], at);
  }

  return {
    async identitiesForConnect(deviceIds) {
      const found = new Map<string, ConnectIdentity>();
      for (const part of chunks([...new Set(deviceIds)], 5000)) {
        const rows = await db
          .select({ deviceId: devices.id, publicKey: devices.publicKey, enrollment: devices.enrollment })
          .from(devices)
          .where(inArray(devices.id, part));
        for (const row of rows) found.set(row.deviceId, { deviceId: row.deviceId, publicKey: row.publicKey, enrollment: row.enrollment as EnrollmentState });
      }
      return found;
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
      // HW-LIVE-1: a CONNECT is no sign of life (its token may have been harvested); last-seen waits for a signed message.
      await db.update(devices).set({ connected: true }).where(eq(devices.id, deviceId));
    },

    async onDisconnected(deviceId) {
      await db.update(devices).set({ connected: false }).where(eq(devices.id, deviceId));
    },

    async onSessionTakeover(deviceId, peers) {
      const now = ctx.now();
      const at = new Date(now);
      const threshold = ctx.options.sessionTakeoverThreshold ?? DEFAULT_TAKEOVER_THRESHOLD;
      const windowMs = ctx.options.sessionTakeoverWindowMs ?? DEFAULT_TAKEOVER_WINDOW_MS;
      await db.transaction(async (tx) => {
        const device = await lockDevice(tx, deviceId);
        if (!device) return;
        const recent = await tx
          .select({ id: deviceEvents.id })
          .from(deviceEvents)
          .where(and(eq(deviceEvents.deviceId, deviceId), eq(deviceEvents.kind, TAKEOVER_EVENT), gte(deviceEvents.receivedAt, new Date(now - windowMs))));
        const takeoversInWindow = recent.length + 1;
        // HW-AUTH-2: stored as a device event (plane-made: the id says so), visible in GET devices/{id}/events.
        await tx.insert(deviceEvents).values({
          deviceId,
          id: `plane-${TAKEOVER_EVENT}-${now}-${randomBytes(4).toString("hex")}`,
          kind: TAKEOVER_EVENT,
          severity: "warning",
          ts: at,
          detail: { ...peers, takeoversInWindow, windowMs, source: "control-plane" },
          receivedAt: at,
        });
        // Operators' stream and webhooks hear of every takeover, in the same transaction (HW-HOOK-2).
        await recordPlaneEvents(tx, [{ kind: "session.takeover", deviceId, data: { ...peers, takeoversInWindow, windowMs } }], at);
        // HW-AUTH-2: repeated takeovers count against the device; a worse verdict is never lowered.
        if (takeoversInWindow < threshold || !TAKEOVER_WARNS.includes(device.appraisal as AppraisalState)) return;
        const to = transition("appraisal", device.appraisal as AppraisalState, "appraised-warning");
        await tx.update(devices).set({ appraisal: to, updatedAt: at }).where(eq(devices.id, deviceId));
        const actor: Actor = { kind: "system", id: "session-takeover" };
        const reason = `session takeover: ${takeoversInWindow} in ${windowMs} ms (latest from ${peers.newPeer}, previous ${peers.previousPeer})`;
        await recordTransitions(tx, [{ deviceId, machine: "appraisal", from: device.appraisal, to, reason, actor }], at);
      });
    },

    async onHello(hello: Hello, session: DeviceSession) {
      const now = ctx.now();
      verifyLiveness(hello, session, now); // HW-LIVE-1: a hello counts as seen only when signed for this connection
      // After the check: a hello that is not the device's issues nothing (e.g. no due set-policy).
      if (hooks.beforeHello) await runHook("beforeHello", hello.deviceId, () => hooks.beforeHello!(hello));
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
          if (row.containment === "quarantined" && hello.containment === "none") {
            // HW-Q-1: only a signed release lifts a quarantine; a device that lost it (state.json gone) gets it again.
            const device = (await lockDevice(tx, hello.deviceId)) as DeviceRow;
            await reassertQuarantine(ctx, tx, device, SEQUENCE_ACTOR, "device reports containment none while quarantined (agent state lost): quarantine sent again", now);
          }
        }
        // HW-EVD-2 (sibling): the agent persists a command's seq before acking it, so a hello below the highest
        // acked seq means its state file was lost. Hold the verdict until it answers the challenge sent below.
        const [acked] = await tx
          .select({ seq: max(commands.seq) })
          .from(commands)
          .where(and(eq(commands.deviceId, hello.deviceId), isNotNull(commands.ackedAt)));
        if (acked?.seq != null && hello.lastCommandSeq < acked.seq) {
          const device = (await lockDevice(tx, hello.deviceId)) as DeviceRow;
          await holdForSequenceReset(tx, device, `agent reports lastCommandSeq ${hello.lastCommandSeq} below the acked ${acked.seq}`, at);
        }
        const pending = await pendingCommands(tx, [hello.deviceId], now);
        const challenge = await insertChallenge(ctx, tx, hello.deviceId, now);
        return { pending, challenge };
      });
      if (!result) return;
      // Commands first, in seq order, so the agent sees them before it answers the challenge.
      retries.reset(hello.deviceId);
      await publishCommands(ctx, result.pending);
      await publishChallenge(ctx, result.challenge);
    },

    async onHeartbeat(heartbeat: Heartbeat, session: DeviceSession) {
      heartbeats.add(heartbeat, session); // HW-LIVE-1: verified before anything is buffered
      if (hooks.afterHeartbeat) await runHook("afterHeartbeat", heartbeat.deviceId, () => hooks.afterHeartbeat!(heartbeat));
    },

    async onEvidence(evidence: Evidence): Promise<AttestationResult> {
      const before = await verifiedFrom(evidence);
      const now = ctx.now();
      const at = new Date(now);
      const outcome = await db.transaction(async (tx) => {
        const device = (await lockDevice(tx, before.id)) as DeviceRow;
        if (device.enrollment !== "accepted") throw new VerificationError(`device ${device.id} is ${device.enrollment}, not accepted`);
        const held = device.sequenceResetAt !== null;
        const belowSeq = evidence.seq <= device.lastEvidenceSeq;
        // HW-EVD-2: while a sequence reset holds the verdict, only a fresh challenge answer counts.
        if (held && evidence.nonce === null) {
          throw new FreshnessError(
            `evidence seq ${evidence.seq} is unsolicited while a sequence reset (since ${device.sequenceResetAt!.toISOString()}) waits for a challenge answer`,
          );
        }
        let rebase = held; // a fresh challenge answer (nonce checked below) ends the hold and re-bases the sequence
        if (belowSeq && !held) {
          // HW-EVD-1: seq must exceed the last accepted one. HW-EVD-2: unless this is an agent that lost its
          // state (signed now, after the last accepted evidence; an older one is a replay or arrived out of order).
          const message = `evidence seq ${evidence.seq} is not above the last accepted ${device.lastEvidenceSeq} (replay)`;
          if (Math.abs(now - evidence.ts) > MAX_CLOCK_DIFFERENCE_MS) throw new FreshnessError(message);
          const [last] = await tx
            .select({ ts: evidenceTable.ts })
            .from(evidenceTable)
            .where(and(eq(evidenceTable.deviceId, device.id), eq(evidenceTable.epoch, device.evidenceEpoch), eq(evidenceTable.seq, device.lastEvidenceSeq)));
          if (!last || evidence.ts <= last.ts.getTime()) throw new FreshnessError(message);
          if (evidence.nonce !== null) rebase = true; // the reset shows first in a challenge answer
          else {
            await holdForSequenceReset(tx, device, `evidence seq ${evidence.seq} is not above the last accepted ${device.lastEvidenceSeq}, signed after it`, at);
            return { sequenceReset: { message, challenge: await insertChallenge(ctx, tx, device.id, now) } };
          }
        }
        if (evidence.nonce === null && device.evidenceEpochStartedTs && evidence.ts < device.evidenceEpochStartedTs.getTime()) {
          // HW-EVD-2: signed before the challenge answer that began this sequence: from the lost one (replay).
          throw new FreshnessError(`evidence ts ${evidence.ts} is older than the sequence reset at ${device.evidenceEpochStartedTs.toISOString()} (replay)`);
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
          // HW-APPRAISE-3: under containment, evidence that could not see the cause does not clear it.
          // HW-ALERT-2: the device's active farm alerts (from telemetry) stay folded into every appraisal.
          { containment: device.containment as ContainmentState, previous: device.lastAppraisal as AttestationResult | null, farmFindings: device.farmFindings as Finding[] },
        );

        if (rebase && !held) {
          // The reset shows first in this challenge answer (the unsolicited evidence before it was lost).
          await holdForSequenceReset(tx, device, `challenge answer seq ${evidence.seq} is not above the last accepted ${device.lastEvidenceSeq}`, at);
          device.appraisal = device.appraisal === "contraindicated" ? device.appraisal : "unknown";
        }
        const epoch = rebase ? device.evidenceEpoch + 1 : device.evidenceEpoch;
        await tx.insert(evidenceTable).values({
          deviceId: device.id,
          epoch,
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
            // HW-EVD-2: a fresh challenge answer ends a sequence-reset hold and begins the new sequence.
            ...(rebase ? { evidenceEpoch: epoch, evidenceEpochStartedTs: new Date(evidence.ts), sequenceResetAt: null } : {}),
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
        if (from !== to || rebase) {
          const reason = rebase ? `fresh challenge answer after a sequence reset (evidence epoch ${epoch}): ${result.summary}` : result.summary;
          await recordTransitions(tx, [{ deviceId: device.id, machine: "appraisal", from, to, reason, actor, evidence: result }], at);
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
        return { result, toPublish, sequenceReset: null };
      });
      if (outcome.sequenceReset) {
        // Committed: the verdict is held and a challenge stored; the evidence itself is still refused.
        ctx.logger.warn({ deviceId: evidence.deviceId, seq: evidence.seq }, "evidence sequence reset: verdict held as unknown until a challenge answer");
        await publishChallenge(ctx, outcome.sequenceReset.challenge);
        throw new FreshnessError(`${outcome.sequenceReset.message}; sequence reset noted, challenge sent`);
      }
      await publishCommands(ctx, outcome.toPublish!);
      return outcome.result!;
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
      if (hooks.afterAck) await runHook("afterAck", ack.deviceId, () => hooks.afterAck!(ack));
    },

    async retryPendingCommands() {
      // HW-FAULT-11: a forward step of the plane's clock is not elapsed time either: a quarantine in flight is not
      // expired (and containment not dropped) until a full window has passed on the new clock.
      const hold = clockSteps.check().hold;
      const now = ctx.now();
      if (!hold) await expireCommands(ctx, now);
      // Old challenges only take space: a deleted nonce is refused as "not issued", so this cannot weaken HW-EVD-1.
      await db.delete(challenges).where(lt(challenges.expiresAt, new Date(now - CHALLENGE_RETENTION_MS)));
      // An expired token is refused on its expiry alone, so its nonce no longer needs remembering. Not right after a
      // forward step of our clock (HW-FAULT-11): a token still valid in real time would become replayable (HW-AUTH-1)
      // once the clock is back.
      if (!hold) await db.delete(connectTokenNonces).where(lt(connectTokenNonces.expiresAt, new Date(now)));
      const pending = await pendingCommands(db, null, now);
      // HW-HA-4: only what this replica's publisher can deliver, each command claimed by one replica per period.
      const reachable = pending.filter((command) => ctx.publisher.isConnected(command.deviceId));
      await publishCommands(ctx, await claimForRepublish(ctx, retries.due(reachable), now));
    },

    async markStaleDevices() {
      await heartbeats.flush();
      // HW-FAULT-11: a step of the plane's clock is not silence; every device gets a full window on the new clock.
      if (clockSteps.check().hold) return;
      const now = ctx.now();
      const at = new Date(now);
      const cutoff = new Date(now - ctx.options.staleAfterMs);
      // A sighting in our future predates a backward step and the window after it (HW-FAULT-11): silent since.
      const future = new Date(now + FUTURE_LAST_SEEN_TOLERANCE_MS);
      await db.transaction(async (tx) => {
        const stale = await tx
          .select({ id: devices.id, appraisal: devices.appraisal, lastSeenAt: devices.lastSeenAt })
          .from(devices)
          .where(and(eq(devices.enrollment, "accepted"), inArray(devices.appraisal, STALE_FROM), or(lt(devices.lastSeenAt, cutoff), gt(devices.lastSeenAt, future))))
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
          reason:
            row.lastSeenAt && row.lastSeenAt > future
              ? `not seen since ${row.lastSeenAt.toISOString()}, in the plane's future: a sighting from before its clock stepped back (more than ${ctx.options.staleAfterMs} ms ago)`
              : `not seen since ${row.lastSeenAt?.toISOString()} (more than ${ctx.options.staleAfterMs} ms)`,
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


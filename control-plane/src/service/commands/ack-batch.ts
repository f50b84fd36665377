/**
 * Signed acks, applied in batches. A fleet-wide quarantine brings 1,000 acks within a second; one transaction
 * each costs ~5 ms on PGlite (~100 us a statement), so they are gathered for one event-loop turn and written
 * together: one key lookup, one lock, one command update, one update per resulting containment state and one
 * batch of transition/audit rows. Each ack still gets its own answer: a refused ack (bad signature, unknown
 * command, wrong action) is rejected alone and writes nothing (HW-SIG-1); the rest of its batch goes through.
 */
import { and, inArray, sql } from "drizzle-orm";
import { fromBase64Url, verifyBytesFast, verifySignedObject } from "../../../../shared/crypto/index.js";
import { VerificationError } from "../../../../shared/errors/index.js";
import type { Ack } from "../../../../shared/protocol/index.js";
import { commands, devices } from "../../db/index.js";
import { canTransition, transition } from "../../trust/index.js";
import type { ServiceContext } from "../context.js";
import { chunks, recordTransitions, type TransitionRecord } from "../tx.js";
import type { ContainmentState } from "../types.js";
import type { ContainmentAction } from "./issue.js";

interface Pending {
  ack: Ack;
  resolve: () => void;
  reject: (error: unknown) => void;
}

const MAX_BATCH = 1000;

/**
 * Gathers acks for one event-loop turn and applies them together (see the file comment); one instance per
 * DeviceSideService.
 */
export class AckBatcher {
  #queue: Pending[] = [];
  #draining = false;

  constructor(private readonly ctx: ServiceContext) {}

  /** Resolves once the ack is durably recorded (or was already); rejects, having written nothing, if refused. */
  submit(ack: Ack): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ ack, resolve, reject });
      if (!this.#draining) {
        this.#draining = true;
        setImmediate(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      // One ack per device per batch: a device's second ack waits for the first to be committed.
      const batch: Pending[] = [];
      const later: Pending[] = [];
      const seen = new Set<string>();
      for (const item of this.#queue) {
        if (batch.length < MAX_BATCH && !seen.has(item.ack.deviceId)) {
          seen.add(item.ack.deviceId);
          batch.push(item);
        } else {
          later.push(item);
        }
      }
      this.#queue = later;
      try {
        await this.#apply(batch);
      } catch (error) {
        for (const item of batch) item.reject(error);
      }
    }
    this.#draining = false;
  }

  async #apply(batch: Pending[]): Promise<void> {
    const { ctx } = this;
    const at = new Date(ctx.now());
    const ids = batch.map((item) => item.ack.deviceId);

    // HW-SIG-1: each ack verifies with its device's enrolled key, and the device must still be accepted.
    const keyRows = await ctx.db
      .select({ id: devices.id, publicKey: devices.publicKey, enrollment: devices.enrollment })
      .from(devices)
      .where(inArray(devices.id, ids));
    const keys = new Map(keyRows.map((row) => [row.id, row]));
    const verified: Pending[] = [];
    for (const item of batch) {
      try {
        const row = keys.get(item.ack.deviceId);
        if (!row) throw new VerificationError(`device ${item.ack.deviceId} is not enrolled`);
        verifySignedObject(item.ack, fromBase64Url(row.publicKey), verifyBytesFast);
        if (row.enrollment !== "accepted") throw new VerificationError(`device ${row.id} is ${row.enrollment}, not accepted`);
        verified.push(item);
      } catch (error) {
        item.reject(error);
      }
    }
    if (verified.length === 0) return;

    const refused = new Map<Pending, unknown>();
    await ctx.db.transaction(async (tx) => {
      refused.clear(); // a retried transaction decides afresh
      const verifiedIds = verified.map((item) => item.ack.deviceId);
      const locked = await tx.select().from(devices).where(inArray(devices.id, verifiedIds)).for("update");
      const deviceById = new Map(locked.map((row) => [row.id, row]));
      const commandRows = await tx
        .select()
        .from(commands)
        .where(and(inArray(commands.deviceId, verifiedIds), inArray(commands.seq, [...new Set(verified.map((item) => item.ack.seq))])))
        .for("update");
      const commandOf = new Map(commandRows.map((row) => [`${row.deviceId}/${row.seq}`, row]));

      const updates: Array<{ deviceId: string; seq: number; status: string; ack: Ack; reason: string | null }> = [];
      const containmentTo = new Map<ContainmentState, string[]>();
      const records: TransitionRecord[] = [];
      for (const item of verified) {
        const { ack } = item;
        const command = commandOf.get(`${ack.deviceId}/${ack.seq}`);
        if (!command) {
          refused.set(item, new VerificationError(`ack for unknown command seq ${ack.seq} of ${ack.deviceId}`));
          continue;
        }
        if (command.action !== ack.action) {
          refused.set(item, new VerificationError(`ack for command ${ack.seq} says ${ack.action}, the command was ${command.action}`));
          continue;
        }
        if (command.ackedAt) continue; // a redelivered ack: already recorded, nothing changes
        const status = command.status === "pending" ? (ack.status === "done" ? "acked" : "failed") : command.status;
        updates.push({ deviceId: ack.deviceId, seq: ack.seq, status, ack, reason: ack.reason ?? command.reason });
        if (command.status !== "pending") {
          // Superseded or expired: the live request is another command; containment follows that one's ack.
          ctx.logger.info({ deviceId: ack.deviceId, seq: ack.seq, status: command.status }, "late ack recorded without a transition");
          continue;
        }
        if (command.action !== "quarantine" && command.action !== "release") continue;
        const action = command.action as ContainmentAction;
        const event = ack.status === "done" ? (`${action}-acked` as const) : "command-failed";
        const device = deviceById.get(ack.deviceId);
        const from = device?.containment as ContainmentState;
        // HW-TRUST-3: containment completes only on the device's signed ack, along the table's edges.
        if (!device || !canTransition("containment", from, event)) {
          ctx.logger.warn({ deviceId: ack.deviceId, seq: ack.seq, from, event }, "ack does not match the containment state");
          continue;
        }
        const to = transition("containment", from, event);
        containmentTo.set(to, [...(containmentTo.get(to) ?? []), ack.deviceId]);
        const reason =
          ack.status === "done"
            ? `device acknowledged ${action} command ${ack.seq}`
            : `device failed ${action} command ${ack.seq}: ${ack.reason ?? "no reason given"}`;
        records.push({ deviceId: ack.deviceId, machine: "containment", from, to, reason, actor: { kind: "device", id: ack.deviceId }, evidence: { ack } });
      }

      for (const part of chunks(updates, 500)) {
        const values = part.map(
          (u) => sql`(${u.deviceId}::text, ${u.seq}::int, ${u.status}::text, ${JSON.stringify(u.ack)}::jsonb, ${u.reason}::text)`,
        );
        await tx.execute(sql`
          update commands as c
          set status = v.status, acked_at = ${at.toISOString()}::timestamptz, ack = v.ack, reason = v.reason
          from (values ${sql.join(values, sql`, `)}) as v(device_id, seq, status, ack, reason)
          where c.device_id = v.device_id and c.seq = v.seq`);
      }
      for (const [to, deviceIds] of containmentTo) {
        await tx.update(devices).set({ containment: to, updatedAt: at }).where(inArray(devices.id, deviceIds));
      }
      await recordTransitions(tx, records, at);
    });

    for (const item of verified) {
      const error = refused.get(item);
      if (error === undefined) item.resolve();
      else item.reject(error);
    }
  }
}

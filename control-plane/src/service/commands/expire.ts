/**
 * Command expiry (HW-TRUST-3): a command not acknowledged before its `expiresAt` is expired, and containment
 * falls back from the requested state to the one before the request.
 */
import { and, eq, lte } from "drizzle-orm";
import { commands, devices } from "../../db/index.js";
import { canTransition, transition } from "../../trust/index.js";
import type { ServiceContext } from "../context.js";
import { lockDevice, recordTransitions, type TransitionRecord } from "../tx.js";
import type { Actor, ContainmentState } from "../types.js";
import { REQUESTED_STATE } from "./issue.js";

/**
 * Marks pending commands past their expiry `expired` and moves containment back from the requested state
 * (HW-TRUST-3). One UPDATE ... RETURNING claims each command once, so several replicas can run this.
 */
export async function expireCommands(ctx: ServiceContext, now: number): Promise<number> {
  const at = new Date(now);
  return ctx.db.transaction(async (tx) => {
    const expired = await tx
      .update(commands)
      .set({ status: "expired", reason: "expired before the device acknowledged it" })
      .where(and(eq(commands.status, "pending"), lte(commands.expiresAt, at)))
      .returning({ deviceId: commands.deviceId, seq: commands.seq, action: commands.action, payload: commands.payload });
    const records: TransitionRecord[] = [];
    const actor: Actor = { kind: "system", id: "command-expiry" };
    for (const command of expired) {
      if (command.action !== "quarantine" && command.action !== "release") continue;
      const device = await lockDevice(tx, command.deviceId);
      if (!device || device.containment !== REQUESTED_STATE[command.action]) continue;
      const from = device.containment as ContainmentState;
      if (!canTransition("containment", from, "command-expired")) continue;
      const to = transition("containment", from, "command-expired");
      await tx.update(devices).set({ containment: to, updatedAt: at }).where(eq(devices.id, device.id));
      records.push({
        deviceId: device.id,
        machine: "containment",
        from,
        to,
        reason: `${command.action} command ${command.seq} expired before the device acknowledged it`,
        actor,
        evidence: { command: command.payload },
      });
    }
    await recordTransitions(tx, records, at);
    return expired.length;
  });
}

/**
 * Pending commands: which are outstanding (what a reconnecting agent must receive) and when the retry timer
 * re-publishes them (CommandRetrySchedule, HW-TRUST-3).
 */
import { and, asc, eq, gt, inArray } from "drizzle-orm";
import type { Command } from "../../../../shared/protocol/index.js";
import { commands } from "../../db/index.js";
import type { Tx } from "../tx.js";

/** Longest gap, in retry-timer ticks, between two re-publishes of the same pending commands to a device. */
export const MAX_RETRY_GAP_TICKS = 8;

/**
 * Which pending commands the retry timer re-publishes on a tick (HASHWARD_COMMAND_RETRY_MS apart): a device's
 * pending commands go out on the first tick that sees them, then after 1, 2, 4, ... MAX_RETRY_GAP_TICKS ticks
 * while they stay the same, and again on the next tick when they change (an ack, a new command) or after
 * `reset` (the device said hello on a new connection: onHello has just published them).
 *
 * Why a backoff: on a live connection a QoS 1 command is delivered or the connection drops (and the hello of the
 * next one re-publishes it), so a retry is for the rare lost handling. Re-publishing every tick to a device that
 * has not acked yet only because it or the plane is busy multiplies the load exactly when there is least room
 * (100 agents on one loaded machine answered each copy with a queued ack, and the release of the whole fleet
 * never completed, test/e2e/tls-renewal.test.ts). A device's commands go out together and in seq order: the
 * agent refuses a seq below one it executed (HW-CMD-1). In memory, per replica: a restart starts afresh.
 */
export class CommandRetrySchedule {
  #tick = 0;
  readonly #devices = new Map<string, { seqs: string; gap: number; dueTick: number }>();

  /** Advances one tick; returns the commands of `pending` (all pending commands, seq order per device) due now. */
  due(pending: readonly Command[]): Command[] {
    this.#tick += 1;
    const byDevice = new Map<string, Command[]>();
    for (const command of pending) {
      const list = byDevice.get(command.deviceId);
      if (list) list.push(command);
      else byDevice.set(command.deviceId, [command]);
    }
    for (const deviceId of this.#devices.keys()) if (!byDevice.has(deviceId)) this.#devices.delete(deviceId);
    const out: Command[] = [];
    for (const [deviceId, list] of byDevice) {
      const seqs = list.map((command) => command.seq).join(",");
      const entry = this.#devices.get(deviceId);
      if (entry && entry.seqs === seqs && this.#tick < entry.dueTick) continue;
      const gap = entry && entry.seqs === seqs ? Math.min(entry.gap * 2, MAX_RETRY_GAP_TICKS) : 1;
      this.#devices.set(deviceId, { seqs, gap, dueTick: this.#tick + gap });
      out.push(...list);
    }
    return out;
  }

  /** Forgets the device's schedule: its next tick re-publishes whatever is pending. */
  reset(deviceId: string): void {
    this.#devices.delete(deviceId);
  }
}

/** Pending, unexpired commands of the device, in seq order (what a (re)connecting agent must receive). */
export async function pendingCommands(tx: Tx, deviceIds: string[] | null, now: number): Promise<Command[]> {
  const base = and(eq(commands.status, "pending"), gt(commands.expiresAt, new Date(now)));
  const where = deviceIds ? and(base, inArray(commands.deviceId, deviceIds)) : base;
  const rows = await tx.select({ payload: commands.payload }).from(commands).where(where).orderBy(asc(commands.deviceId), asc(commands.seq));
  return rows.map((row) => row.payload as Command);
}

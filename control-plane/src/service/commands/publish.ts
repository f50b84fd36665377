/**
 * Publishing commands: after the issuing transaction commits, and again by the retry timer. A replica claims a
 * command before re-publishing it (HW-HA-4), so replicas ticking together never send one command twice.
 */
import { and, eq, gt, isNull, lte, or, sql } from "drizzle-orm";
import type { Command } from "../../../../shared/protocol/index.js";
import { commands } from "../../db/index.js";
import type { ServiceContext } from "../context.js";
import { chunks } from "../tx.js";

/** Publishes after commit; a failure is logged and left to the retry timer (the command stays pending). */
export async function publishCommands(ctx: ServiceContext, toPublish: Command[]): Promise<void> {
  // In seq order per device (the agent refuses a seq below one it executed), devices side by side: a fleet-wide
  // quarantine must not wait for 1,000 publishes one after another.
  const byDevice = new Map<string, Command[]>();
  for (const command of toPublish) {
    const list = byDevice.get(command.deviceId);
    if (list) list.push(command);
    else byDevice.set(command.deviceId, [command]);
  }
  await Promise.all(
    [...byDevice].map(async ([deviceId, list]) => {
      for (const command of list) {
        if (!ctx.publisher.isConnected(deviceId)) return;
        try {
          await ctx.publisher.publish(deviceId, "command", command);
        } catch (error) {
          ctx.logger.warn({ err: error, deviceId, seq: command.seq }, "command publish failed; will retry");
        }
      }
    }),
  );
}

const DEFAULT_COMMAND_RETRY_MS = 5_000;

/**
 * HW-HA-4: claims `candidates` (pending commands this replica is about to re-publish) with one UPDATE ...
 * RETURNING per chunk: only commands still pending, unexpired, and not handed to the broker within 0.9 of the
 * retry interval by any replica get `published_at = now` and come back (in seq order per device). Replicas ticking
 * at the same moment get disjoint sets, so a retry never sends one command twice in one retry period.
 */
export async function claimForRepublish(ctx: ServiceContext, candidates: readonly Command[], now: number): Promise<Command[]> {
  if (candidates.length === 0) return [];
  const at = new Date(now);
  const cutoff = new Date(now - Math.floor(0.9 * (ctx.options.commandRetryMs ?? DEFAULT_COMMAND_RETRY_MS)));
  const claimed: Command[] = [];
  for (const part of chunks([...candidates], 5000)) {
    const keys = sql.join(
      part.map((command) => sql`(${command.deviceId}::text, ${command.seq}::integer)`),
      sql`, `,
    );
    const rows = await ctx.db
      .update(commands)
      .set({ publishedAt: at })
      .where(
        and(
          eq(commands.status, "pending"),
          gt(commands.expiresAt, at),
          or(isNull(commands.publishedAt), lte(commands.publishedAt, cutoff)),
          sql`(${commands.deviceId}, ${commands.seq}) in (${keys})`,
        ),
      )
      .returning({ payload: commands.payload });
    for (const row of rows) claimed.push(row.payload as Command);
  }
  return claimed.sort((a, b) => (a.deviceId === b.deviceId ? a.seq - b.seq : a.deviceId < b.deviceId ? -1 : 1));
}

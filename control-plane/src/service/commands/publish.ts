/**
 * Publishing commands: after the issuing transaction commits, and again by the retry timer. A replica claims a
 * command before re-publishing it (HW-HA-4), so replicas ticking together never send one command twice.
 */
import { and, eq, gt, isNull, lte, or, sql } from "drizzle-orm";
import type { Command } from "../../../../shared/protocol/index.js";
import { commands } from "../../db/index.js";
import type { ServiceContext } from "../context.js";
import { chunks } from "../tx.js";

/**
 * Publishes after commit; a failure is logged and left to the retry timer (the command stays pending). What the
 * broker took gets `published_at` = the time its publishes finished (HW-TRUST-3: the retry timer counts a command's
 * age from its last publish, so a fan-out whose publishes take seconds is not re-sent by a tick while its acks are
 * still arriving).
 */
export async function publishCommands(ctx: ServiceContext, toPublish: Command[]): Promise<void> {
  // In seq order per device (the agent refuses a seq below one it executed), devices side by side: a fleet-wide
  // quarantine must not wait for 1,000 publishes one after another.
  const byDevice = new Map<string, Command[]>();
  for (const command of toPublish) {
    const list = byDevice.get(command.deviceId);
    if (list) list.push(command);
    else byDevice.set(command.deviceId, [command]);
  }
  const published: Command[] = [];
  await Promise.all(
    [...byDevice].map(async ([deviceId, list]) => {
      for (const command of list) {
        if (!ctx.publisher.isConnected(deviceId)) return;
        try {
          await ctx.publisher.publish(deviceId, "command", command);
          published.push(command);
        } catch (error) {
          ctx.logger.warn({ err: error, deviceId, seq: command.seq }, "command publish failed; will retry");
        }
      }
    }),
  );
  await stampPublished(ctx, published).catch((error: unknown) => ctx.logger.warn({ err: error }, "could not record when commands were published; the retry timer may re-send them early"));
}

/** `(device_id, seq) in (...)` for a chunk of commands. */
function commandKeys(part: readonly Command[]) {
  return sql.join(
    part.map((command) => sql`(${command.deviceId}::text, ${command.seq}::integer)`),
    sql`, `,
  );
}

/** Sets `published_at` = now on the pending ones of `published` (one UPDATE per 5,000). */
async function stampPublished(ctx: ServiceContext, published: readonly Command[]): Promise<void> {
  if (published.length === 0) return;
  const at = new Date(ctx.now());
  for (const part of chunks([...published], 5000)) {
    await ctx.db
      .update(commands)
      .set({ publishedAt: at })
      .where(and(eq(commands.status, "pending"), sql`(${commands.deviceId}, ${commands.seq}) in (${commandKeys(part)})`));
  }
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
    const keys = commandKeys(part);
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

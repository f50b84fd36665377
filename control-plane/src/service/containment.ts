/**
 * The operator's quarantine and release (HW-TRUST-3): signed commands to accepted devices, in one transaction for
 * the whole set, published after it commits; containment completes only on each device's signed ack.
 */
import { ConflictError, NotFoundError } from "../errors.js";
import { issueContainment, publishCommands, type ContainmentAction } from "./commands/index.js";
import type { ServiceContext } from "./context.js";
import { type DeviceRow, lockDevices } from "./tx.js";
import type { Actor, CommandView, ControlPlaneService } from "./types.js";

/** quarantine / release of ControlPlaneService: NotFoundError for an unknown id, ConflictError for a device not accepted. */
export function createContainment(ctx: ServiceContext): Pick<ControlPlaneService, "quarantine" | "release"> {
  const { db } = ctx;

  async function containment(actor: Actor, deviceIds: string[], reason: string, action: ContainmentAction): Promise<CommandView[]> {
    const ids = [...new Set(deviceIds)];
    const now = ctx.now();
    const result = await db.transaction(async (tx) => {
      const rows = await lockDevices(tx, ids);
      if (rows.length !== ids.length) {
        const found = new Set(rows.map((row) => row.id));
        throw new NotFoundError("device", ids.find((id) => !found.has(id)) ?? "");
      }
      const notAccepted = rows.find((row) => row.enrollment !== "accepted");
      if (notAccepted) throw new ConflictError(`device ${notAccepted.id} is ${notAccepted.enrollment}, not accepted: no commands are sent to it`);
      const byId = new Map(rows.map((row) => [row.id, row]));
      return issueContainment(ctx, tx, ids.map((id) => byId.get(id) as DeviceRow), action, actor, reason, now);
    });
    await publishCommands(ctx, result.toPublish);
    return result.views;
  }

  return {
    quarantine: (actor, deviceIds, reason) => containment(actor, deviceIds, reason, "quarantine"),
    release: (actor, deviceIds, reason) => containment(actor, deviceIds, reason, "release"),
  };
}

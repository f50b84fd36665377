/**
 * The typed `detail` of each signed device event kind (`event.kind`, EVENT_KINDS in schemas.ts): what the agent
 * writes (agent/src/outbox `createEvent` takes the detail of its kind) and what the plane reads (the guard-alert
 * announcement, rollouts' update-progress). The wire schema (`eventSchema.detail`) stays a free-form record, so a
 * later agent may add fields and an older one may lack one; these describe what this version sends.
 */
import { z } from "zod";
import { EVENT_KINDS, findingSchema } from "./schemas.js";
import { updateProgressDetailSchema } from "./update.js";

const seq = z.number().int().nonnegative();

export const DEVICE_EVENT_DETAIL = {
  /** The quarantine command `seq` was enforced; the hosts the board still talks to (the plane's). */
  "quarantine-enforced": z.object({ seq, controlPlaneHosts: z.array(z.string()) }),
  /** The release command `seq` was executed. */
  "quarantine-lifted": z.object({ seq }),
  /** A command failed verification (HW-CMD-1: signature, device, seq, expiry); nothing ran. */
  "command-rejected": z.object({ reason: z.string(), seq: z.number().int(), action: z.string() }),
  /** Watched paths changed; evidence follows. */
  "watch-change": z.object({ paths: z.array(z.string()) }),
  /** The outbox was full: `dropped` events were lost, the cap is `maxEvents`. */
  "outbox-overflow": z.object({ dropped: z.number().int().nonnegative(), maxEvents: z.number().int().positive() }),
  "agent-started": z.object({ agentVersion: z.string(), bootId: z.string(), containment: z.enum(["none", "quarantined"]) }),
  /** A board action or measurement failed; `seq`/`action` when a command caused it. */
  "platform-error": z.object({ reason: z.string(), seq: seq.optional(), action: z.string().optional() }),
  "update-progress": updateProgressDetailSchema,
  /**
   * A new guard finding (HW-GUARD-2): the finding's guard, subject, tier, message and expected/seen difference, or
   * (guard `enforcement`) the `actions` the agent took to restore approved settings.
   */
  "guard-alert": findingSchema.pick({ guard: true, subject: true, tier: true, message: true, expected: true, seen: true }).extend({ actions: z.array(z.string()).optional() }),
} as const satisfies Record<(typeof EVENT_KINDS)[number], z.ZodType>;

export type DeviceEventDetail<K extends (typeof EVENT_KINDS)[number] = (typeof EVENT_KINDS)[number]> = z.infer<(typeof DEVICE_EVENT_DETAIL)[K]>;

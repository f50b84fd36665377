/**
 * The one vocabulary of a firmware update, from the agent's journal to the signed progress event to the plane's
 * rollout status (rules HW-UPD-5, HW-RO-1 in docs/rules.md):
 *
 *   journal phase (agent, update.json)  ->  update-progress `phase` (signed event)  ->  rollout device status (plane)
 *   download                                 download                                    downloading
 *   verify                                   verify                                      verifying
 *   install                                  install                                     installing
 *   trial / commit / rollback                health-check                                health-check
 *   committed                                committed                                   succeeded
 *   rolled-back                              rolled-back                                 failed
 *   (refused before a journal exists)        rejected                                    failed
 *
 * The journal is a state machine (UPDATE_JOURNAL_MACHINE, shared/machine): the agent's store refuses any phase
 * change the table has no edge for, so a bug cannot journal `committed` for an install that never reached its
 * health check, or drop a journal after the boot switch (which would leave a trial boot nobody finishes).
 */
import { z } from "zod";
import { defineMachine } from "../machine/index.js";

/** Phases of `<stateDir>/update.json` `journal.phase` (agent/src/update/store.ts). */
export const UPDATE_JOURNAL_PHASES = ["download", "verify", "install", "trial", "commit", "rollback", "committed", "rolled-back"] as const;
export type UpdateJournalPhase = (typeof UPDATE_JOURNAL_PHASES)[number];
/** The outcome phases: the install is over, the journal only keeps its answer for a redelivered command. */
export const FINAL_JOURNAL_PHASES: readonly UpdateJournalPhase[] = ["committed", "rolled-back"];
/** Phases before the boot switch: the board still runs its previous firmware, so the journal may be dropped. */
export const PRE_SWITCH_JOURNAL_PHASES: readonly UpdateJournalPhase[] = ["download", "verify", "install"];

/** `idle` stands for "no journal" (update.json `journal: null`). */
export type UpdateJournalState = UpdateJournalPhase | "idle";

export const UPDATE_JOURNAL_EVENTS = [
  /** A verified `update` command's target passed the model and floor checks; the download starts. */
  "start",
  /** The staged image matched its signed hashes again. */
  "verified",
  /** Writing the inactive slot starts. */
  "install",
  /** The slot is written; the boot switch to it (on trial) is next. */
  "installed",
  /** The trial slot passed its health check. */
  "healthy",
  /** Anything after the boot switch failed (boot, health check, commit): back to the known-good slot. */
  "failed",
  /** The slots committed the trial slot (the floor rises in the same write). */
  "committed",
  /** The slots fell back to the known-good slot. */
  "rolled-back",
  /** Refused or interrupted before the boot switch: nothing on the board changed, the journal goes. */
  "abandon",
] as const;
export type UpdateJournalEvent = (typeof UPDATE_JOURNAL_EVENTS)[number];

/** HW-UPD-5: every phase change the agent's update journal may make. */
export const UPDATE_JOURNAL_MACHINE = defineMachine<UpdateJournalState, UpdateJournalEvent>({
  name: "update-journal",
  states: ["idle", ...UPDATE_JOURNAL_PHASES],
  events: UPDATE_JOURNAL_EVENTS,
  start: "idle",
  table: [
    { from: "idle", event: "start", to: "download" },
    // A finished journal keeps its outcome until the next install replaces it.
    { from: "committed", event: "start", to: "download" },
    { from: "rolled-back", event: "start", to: "download" },
    { from: "download", event: "verified", to: "verify" },
    { from: "verify", event: "install", to: "install" },
    { from: "install", event: "installed", to: "trial" },
    { from: "download", event: "abandon", to: "idle" },
    { from: "verify", event: "abandon", to: "idle" },
    { from: "install", event: "abandon", to: "idle" },
    { from: "trial", event: "healthy", to: "commit" },
    { from: "trial", event: "failed", to: "rollback" },
    // slots.commit() threw: the known-good slot is still there to go back to.
    { from: "commit", event: "failed", to: "rollback" },
    // slots.rollback() threw: the rollback is tried again (at once, or by resume() after a restart).
    { from: "rollback", event: "failed", to: "rollback" },
    { from: "commit", event: "committed", to: "committed" },
    { from: "rollback", event: "rolled-back", to: "rolled-back" },
  ],
});

/** `detail.phase` of a signed `update-progress` event. */
export const UPDATE_PROGRESS_PHASES = ["download", "verify", "install", "health-check", "committed", "rolled-back", "rejected"] as const;
export type UpdateProgressPhase = (typeof UPDATE_PROGRESS_PHASES)[number];

/** The progress phase a journal phase reports. */
export const PROGRESS_PHASE_OF_JOURNAL: Readonly<Record<UpdateJournalPhase, UpdateProgressPhase>> = {
  download: "download",
  verify: "verify",
  install: "install",
  trial: "health-check",
  commit: "health-check",
  rollback: "health-check",
  committed: "committed",
  "rolled-back": "rolled-back",
};

/** Per-device update status inside a rollout (plane), from the progress events and, finally, the command's ack. */
export const ROLLOUT_DEVICE_STATUSES = ["waiting", "issued", "downloading", "verifying", "installing", "health-check", "succeeded", "failed", "cancelled"] as const;
export type RolloutDeviceStatus = (typeof ROLLOUT_DEVICE_STATUSES)[number];

/** The rollout device status a progress phase means. */
export const ROLLOUT_STATUS_OF_PROGRESS: Readonly<Record<UpdateProgressPhase, RolloutDeviceStatus>> = {
  download: "downloading",
  verify: "verifying",
  install: "installing",
  "health-check": "health-check",
  committed: "succeeded",
  "rolled-back": "failed",
  rejected: "failed",
};

const slot = z.enum(["a", "b"]);

/**
 * The `detail` of a signed `update-progress` event (agent/src/update sends it, control-plane/src/rollouts reads
 * it). Not strict: a later agent may add fields, which an older plane ignores.
 *   phase       see UPDATE_PROGRESS_PHASES
 *   targetName  the TUF target being installed
 *   version     its signed version (absent when refused before the metadata was read)
 *   rolloutId   the rollout the command came from (absent for a single-device update)
 *   seq         the update command's seq (progress of one command, not of a later one for the same target)
 *   reason      why (rejected, rolled-back)
 *   slot        committed: the slot now running; rolled-back: the known-good slot running again
 */
export const updateProgressDetailSchema = z.object({
  phase: z.enum(UPDATE_PROGRESS_PHASES),
  targetName: z.string().min(1).max(512),
  version: z.string().min(1).max(256).optional(),
  rolloutId: z.string().min(1).max(128).optional(),
  seq: z.number().int().nonnegative().optional(),
  reason: z.string().max(1024).nullable().optional(),
  slot: slot.nullable().optional(),
});
export type UpdateProgressDetail = z.infer<typeof updateProgressDetailSchema>;

/**
 * The params of a signed `update` command: `{ targetName, rolloutId? }` (control-plane/src/rollouts issues it,
 * agent/src/update executes it).
 */
export const updateParamsSchema = z.object({
  targetName: z.string().min(1).max(512),
  rolloutId: z.string().min(1).max(128).optional(),
});
export type UpdateParams = z.infer<typeof updateParamsSchema>;

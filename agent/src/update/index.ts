/**
 * Signed-update-only install with A/B slots and rollback (rules HW-UPD-1..8 in docs/rules.md).
 *
 * An `update` command names a target: {targetName, rolloutId?}. The agent installs it only if
 *   1. tuf-js verifies it against the PROVISIONED trusted root (HW-UPD-1: signatures to threshold, expiry,
 *      rollback/freeze/mix-and-match checks, signed length and hashes; caps and timeouts on every fetch, HW-UPD-2),
 *   2. its signed custom metadata lists this device's model in `hardwareModels`, and
 *   3. its signed `version` is strictly above the persisted anti-rollback floor (HW-UPD-3).
 * Then, each phase journalled BEFORE it acts (store.ts), so a SIGKILL anywhere leaves a bootable board:
 *   download -> verify -> install (inactive slot) -> trial (pending-boot + "reboot") -> health check ->
 *   commit (floor = version) | rollback (fallback slot boots again)                               (HW-UPD-5)
 * At start, `resume()` finishes what a crash interrupted: before the boot switch the board never changed and the
 * journal is dropped (the plane re-sends the command until acked); from the switch on, the health check decides.
 * Progress and result go out as signed `update-progress` events {phase, targetName, version?, reason?, rolloutId?,
 * seq} with phase download | verify | install | health-check | committed | rolled-back | rejected, and as the
 * command's ack (done | failed with the reason). A commit is followed by evidence with reason "update", sent
 * alongside the ack (the ack does not wait for the measurement).
 */
import { createReadStream, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TargetFile } from "tuf-js";
import { describeZodError, HashwardError, ValidationError, type Command } from "../../../shared/index.js";
import type { Logger } from "../log/index.js";
import type { Platform, UpdateSlots } from "../platform/types.js";
import { parseReleaseCustom, type ReleaseCustom } from "../../../shared/protocol/release.js";
import { compareSemVer } from "../../../shared/semver/index.js";
import { UpdateStore, type JournalPatch, type UpdateJournal } from "./store.js";
import { FINAL_JOURNAL_PHASES as FINAL_PHASES, PRE_SWITCH_JOURNAL_PHASES, PROGRESS_PHASE_OF_JOURNAL, updateParamsSchema, type UpdateJournalEvent, type UpdateProgressDetail, type UpdateProgressPhase } from "../../../shared/protocol/update.js";
import { TufClient, TufError } from "./tuf.js";

export { TufClient, TufError, initTrustedRoot } from "./tuf.js";
export { UpdateStore, type UpdateJournal } from "./store.js";
export { buildFirmwareImage, extractFirmwareImage, ImageFormatError, IMAGE_FORMAT } from "./image.js";
export { compareSemVer, isSemVer } from "../../../shared/semver/index.js";

// The update vocabulary (journal phases, progress phases, command params) is the wire contract: shared/protocol/update.ts.
export { UPDATE_PROGRESS_PHASES as UPDATE_PHASES, updateParamsSchema, type UpdateProgressPhase as UpdatePhase } from "../../../shared/protocol/update.js";

/** Points where the test hook may freeze the install (HASHWARD_AGENT_TEST_PAUSE_AT), after the journal write. */
export const CHECKPOINTS = ["download", "verify", "install", "installed", "trial", "decided", "final"] as const;
export type Checkpoint = (typeof CHECKPOINTS)[number];

export interface UpdateOutcome {
  status: "done" | "failed";
  reason?: string;
}

export interface UpdateEngineDeps {
  stateDir: string;
  model: string;
  configuredFirmwareVersion: string;
  platform: Platform;
  /** null when no trusted root is provisioned (`update.trustedRootFile`): every update is refused. */
  tuf: TufClient | null;
  maxImageBytes: number;
  /** Sends a signed `update-progress` event. */
  progress: (severity: "info" | "warning" | "critical", detail: UpdateProgressDetail) => void;
  /** Sends evidence with reason "update" (after a commit). */
  attest: () => Promise<void>;
  log: Logger;
  now: () => number;
  /** Test hook: awaited at each checkpoint (a promise that never settles stands for SIGKILL there). */
  checkpoint?: (point: Checkpoint) => Promise<void>;
}

/** The update was refused before the boot switch (verification, model, floor, size, params): board unchanged. */
export class UpdateRejectedError extends HashwardError {
  override name = "UpdateRejectedError";
}
const Rejected = UpdateRejectedError;

export class UpdateEngine {
  readonly store: UpdateStore;
  private readonly downloadDir: string;

  constructor(private readonly deps: UpdateEngineDeps) {
    this.store = UpdateStore.open(deps.stateDir, deps.configuredFirmwareVersion);
    this.downloadDir = join(deps.stateDir, "update", "download");
  }

  /** The committed running firmware version (hello and evidence report this). */
  get firmwareVersion(): string {
    return this.store.snapshot.firmwareVersion;
  }

  get floor(): string {
    return this.store.snapshot.floor;
  }

  private get slots(): UpdateSlots | null {
    return this.deps.platform.slots ?? null;
  }

  private async checkpoint(point: Checkpoint): Promise<void> {
    await this.deps.checkpoint?.(point);
  }

  /** The install in progress moved by `event` (HW-UPD-5: only along UPDATE_JOURNAL_MACHINE's table). */
  private journal(event: Exclude<UpdateJournalEvent, "start" | "abandon">, patch: JournalPatch = {}): UpdateJournal {
    const journal = this.store.advance(event, patch, this.deps.now());
    if (!journal) throw new Error(`update journal dropped on ${event}`);
    return journal;
  }

  private emit(
    phase: UpdateProgressPhase,
    j: { targetName: string; version?: string | null; rolloutId?: string | null; commandSeq?: number },
    extra: Pick<UpdateProgressDetail, "reason" | "slot"> = {},
  ): void {
    const severity = phase === "rejected" || phase === "rolled-back" ? "warning" : "info";
    this.deps.progress(severity, {
      phase,
      targetName: j.targetName,
      ...(j.version ? { version: j.version } : {}),
      ...(j.rolloutId ? { rolloutId: j.rolloutId } : {}),
      ...(j.commandSeq !== undefined ? { seq: j.commandSeq } : {}),
      ...extra,
    });
  }

  /**
   * Called once at start, before the network: completes or rolls back an install a crash interrupted.
   * HW-UPD-5: before the boot switch nothing on the board changed, so the journal is dropped; from the switch
   * on the trial slot's health check decides.
   */
  async resume(): Promise<void> {
    const j = this.store.journal;
    const slots = this.slots;
    if (j && FINAL_PHASES.includes(j.phase) && !j.reported) {
      // Killed between recording the outcome and queueing its event: report it now.
      this.reportFinal(j);
    }
    if (!j || FINAL_PHASES.includes(j.phase)) {
      // A trial flag without a journal is not ours to keep: fall back to the known-good slot.
      if (slots && (await slots.status().catch(() => null))?.fallback) {
        this.deps.log.warn("board is on a trial boot with no update in progress; rolling back");
        await slots.rollback();
      }
      return;
    }
    const log = this.deps.log.child({ targetName: j.targetName, version: j.version, phase: j.phase });
    if (PRE_SWITCH_JOURNAL_PHASES.includes(j.phase)) {
      log.warn("update interrupted before the boot switch; the board still runs its previous firmware");
      this.store.advance("abandon", {}, this.deps.now());
      rmSync(this.downloadDir, { recursive: true, force: true });
      return;
    }
    if (!slots) throw new Error(`update journal in phase ${j.phase} but the platform has no slots`);
    log.warn("update interrupted after the boot switch; finishing it");
    await this.finishFromTrial(j);
  }

  /** Handles one verified `update` command (called from the CommandHandler after HW-CMD-1 checks). */
  async handle(command: Command): Promise<UpdateOutcome> {
    const parsed = updateParamsSchema.safeParse(command.params);
    const rolloutId = parsed.success ? (parsed.data.rolloutId ?? null) : null;
    const targetName = parsed.success ? parsed.data.targetName : String(command.params["targetName"] ?? "?").slice(0, 512);
    const base = { targetName, rolloutId, commandSeq: command.seq };
    const previous = this.store.journal;
    if (previous && previous.commandSeq === command.seq && FINAL_PHASES.includes(previous.phase)) {
      // Redelivery of a command whose install finished across a restart: same answer, nothing installed twice.
      return previous.phase === "committed" ? { status: "done" } : { status: "failed", reason: `rolled back: ${previous.reason ?? "unknown reason"}` };
    }
    try {
      if (!parsed.success) throw new Rejected(`invalid update params: ${describeZodError(parsed.error)}`);
      if (previous && !FINAL_PHASES.includes(previous.phase)) throw new Rejected(`another update (${previous.targetName}) is in progress`);
      return await this.install(command.seq, targetName, rolloutId);
    } catch (error) {
      const reason = (error instanceof Error ? error.message : String(error)).slice(0, 900);
      const j = this.store.journal;
      if (j && !FINAL_PHASES.includes(j.phase) && j.commandSeq === command.seq) {
        if (j.phase === "trial" || j.phase === "commit" || j.phase === "rollback") {
          // Failed after the boot switch: go back to the known-good slot.
          return await this.finish(this.journal("failed", { reason }), false, reason);
        }
        this.store.advance("abandon", {}, this.deps.now());
      }
      rmSync(this.downloadDir, { recursive: true, force: true });
      this.deps.log.warn({ targetName, reason }, "update rejected; board unchanged");
      this.emit("rejected", { ...base, version: j?.version ?? null }, { reason });
      return { status: "failed", reason: `rejected: ${reason}` };
    }
  }

  private async install(commandSeq: number, targetName: string, rolloutId: string | null): Promise<UpdateOutcome> {
    const { tuf, log } = this.deps;
    const slots = this.slots;
    if (!slots) throw new Rejected("this platform has no A/B slots");
    if (!tuf) throw new Rejected("no trusted TUF root is provisioned (update.trustedRootFile)");
    const status = await slots.status();
    if (status.fallback !== null) throw new Rejected(`slot ${status.active} is still on trial`);

    mkdirSync(this.downloadDir, { recursive: true, mode: 0o700 });
    const started = this.deps.now();
    const base = { targetName, rolloutId, commandSeq };
    log.info({ targetName, seq: commandSeq }, "update started: refreshing TUF metadata and downloading");
    this.emit("download", base);
    // HW-UPD-1/2: tuf-js refreshes and verifies the metadata, then fetches the image capped at its signed
    // length and checks its hashes, in one session.
    const { info, custom, file } = await tuf.session(
      async (updater) => {
        const target = await updater.getTargetInfo(targetName);
        if (!target) throw new Rejected(`target ${targetName} is not in the signed targets metadata`);
        const custom = this.checkTarget(target);
        this.store.begin({
          commandSeq,
          targetName,
          version: custom.version,
          rolloutId,
          sha256: target.hashes["sha256"] ?? "0".repeat(64),
          length: target.length,
          fromSlot: status.active,
          toSlot: null,
          reason: null,
          startedAt: started,
        });
        const cached = await updater.findCachedTarget(target);
        const file = cached ?? (await updater.downloadTarget(target));
        return { info: target, custom, file };
      },
      { targetDir: this.downloadDir },
    );
    await this.checkpoint("download");

    // Verify again from the staged copy: flash is not RAM, and the slot is written from this file. Read in 1 MiB
    // chunks: the default 64 KiB made this pass over a 64 MB image ~1,000 stream reads.
    await info.verify(createReadStream(file, { highWaterMark: 1024 * 1024 })).catch((cause: unknown) => {
      throw new Rejected(`staged image no longer matches its signed hashes: ${String(cause)}`);
    });
    let j = this.journal("verified");
    this.emit(PROGRESS_PHASE_OF_JOURNAL[j.phase], { ...base, version: custom.version });
    log.info({ targetName, version: custom.version, bytes: info.length }, "update verified by TUF");
    await this.checkpoint("verify");

    j = this.journal("install");
    this.emit(PROGRESS_PHASE_OF_JOURNAL[j.phase], { ...base, version: custom.version });
    await this.checkpoint("install");
    const toSlot = await slots.writeInactive(file, statSync(file).size);
    rmSync(this.downloadDir, { recursive: true, force: true });
    await this.checkpoint("installed");

    // Intent first, then the switch: a crash in between is finished by resume().
    j = this.journal("installed", { toSlot });
    return await this.finishFromTrial(j);
  }

  private checkTarget(target: TargetFile): ReleaseCustom {
    let custom: ReleaseCustom;
    try {
      // The wire definition the plane checks at upload (shared/protocol/release.ts): one contract, one version rule.
      custom = parseReleaseCustom(target.custom, target.path);
    } catch (error) {
      const field = error instanceof ValidationError ? ` at ${error.field}` : "";
      throw new Rejected(`target ${target.path}: signed custom metadata invalid${field}: ${(error as Error).message}`);
    }
    if (!custom.hardwareModels.includes(this.deps.model)) {
      throw new Rejected(`target ${target.path} is for ${custom.hardwareModels.join(", ")}, not this ${this.deps.model}`);
    }
    // HW-UPD-3: anti-rollback, strictly above the floor (the same version is not re-installed either).
    if (compareSemVer(custom.version, this.floor) <= 0) {
      throw new Rejected(`target version ${custom.version} is not above the anti-rollback floor ${this.floor}`);
    }
    if (target.length > this.deps.maxImageBytes) {
      throw new Rejected(`target ${target.path} is ${target.length} bytes, over update.maxImageBytes ${this.deps.maxImageBytes}`);
    }
    return custom;
  }

  /** From phase trial/commit/rollback: boot the new slot on trial, check its health, commit or roll back. */
  private async finishFromTrial(j: UpdateJournal): Promise<UpdateOutcome> {
    const slots = this.slots!;
    if (j.phase === "commit") return this.finish(j, true, null);
    if (j.phase === "rollback") return this.finish(j, false, j.reason ?? "rolled back");
    if (!j.toSlot) return this.finish(this.journal("failed", { reason: "journal names no slot" }), false, "journal names no slot");
    try {
      await slots.bootTrial(j.toSlot);
    } catch (error) {
      // The new slot cannot be (or was not) booted: a U-Boot board fell back after bootlimit boots, or the
      // reboot never happened. The running slot is the known-good one: record the rollback (HW-UPD-5).
      const reason = `boot into slot ${j.toSlot} failed: ${error instanceof Error ? error.message : String(error)}`.slice(0, 900);
      return this.finish(this.journal("failed", { reason }), false, reason);
    }
    this.emit(PROGRESS_PHASE_OF_JOURNAL[j.phase], j);
    await this.checkpoint("trial");
    const health = await slots.healthCheck().catch((error: unknown) => ({ healthy: false, reason: `health check failed: ${String(error)}` }));
    const healthy = health.healthy;
    const reason = healthy ? null : `health check failed: ${health.reason ?? "unhealthy"}`;
    const decided = this.journal(healthy ? "healthy" : "failed", { reason });
    await this.checkpoint("decided");
    return this.finish(decided, healthy, reason);
  }

  private async finish(j: UpdateJournal, commit: boolean, reason: string | null): Promise<UpdateOutcome> {
    const slots = this.slots!;
    const log = this.deps.log.child({ targetName: j.targetName, version: j.version });
    if (commit) {
      await slots.commit();
      this.journal("committed", { reason: null });
    } else {
      await slots.rollback();
      this.journal("rolled-back", { reason });
    }
    rmSync(this.downloadDir, { recursive: true, force: true });
    await this.checkpoint("final");
    this.reportFinal(this.store.journal!);
    if (commit) {
      log.info({ slot: j.toSlot }, "update committed");
      // The ack does not wait for the evidence: the plane calls the update succeeded on the ack alone (committed
      // = installed, health-checked, floor raised; control-plane/src/rollouts), and the appraisal of the new slot
      // comes from this evidence whenever it lands. Measuring the new slot takes seconds on a board.
      void this.deps.attest().catch((error: unknown) => log.warn({ err: String(error) }, "post-update evidence not sent"));
      return { status: "done" };
    }
    log.warn({ reason, slot: j.fromSlot }, "update rolled back");
    return { status: "failed", reason: `rolled back: ${reason}` };
  }

  /** Queues the final update-progress event once, then marks the journal reported. */
  private reportFinal(j: UpdateJournal): void {
    // The outcome in the shared vocabulary (shared/protocol/update.ts): committed | rolled-back.
    this.emit(PROGRESS_PHASE_OF_JOURNAL[j.phase], j, j.phase === "committed" ? { slot: j.toSlot } : { reason: j.reason, slot: j.fromSlot });
    this.store.markReported();
  }
}

/** Set by `scripts/build-agent.mjs --define`: true only in the test build (`hashward-agent-linux-x64-testhooks`). */
declare const HASHWARD_AGENT_TEST_HOOKS: boolean | undefined;

/**
 * The install checkpoint hook of the TEST build only: at the checkpoint named by the environment variable
 * HASHWARD_AGENT_TEST_PAUSE_AT the agent writes `<stateDir>/update/paused-at-<point>` and waits until
 * `<stateDir>/update/continue-<point>` exists, so a test can SIGKILL it exactly there. Undefined everywhere else:
 * from source, and in the release binaries, which the build defines HASHWARD_AGENT_TEST_HOOKS=false for, so that
 * this whole hook (the variable's name included) is removed from them as dead code; a test checks the release
 * binaries do not contain the name (agent/src/update/test-hooks.test.ts).
 */
export function testCheckpoint(stateDir: string, env: NodeJS.ProcessEnv): ((point: Checkpoint) => Promise<void>) | undefined {
  if (typeof HASHWARD_AGENT_TEST_HOOKS === "undefined" || !HASHWARD_AGENT_TEST_HOOKS) return undefined;
  const pauseAt = env["HASHWARD_AGENT_TEST_PAUSE_AT"];
  if (!pauseAt) return undefined;
  return async (point) => {
    if (point !== pauseAt) return;
    const dir = join(stateDir, "update");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `paused-at-${point}`), `${process.pid}\n`);
    while (!existsSync(join(dir, `continue-${point}`))) await new Promise((r) => setTimeout(r, 20));
  };
}


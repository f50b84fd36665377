/**
 * Durable, bounded outbox for messages that must not be lost while offline: events and acks.
 * One file per message in `<stateDir>/outbox/` (atomic writes), named `<12-digit counter>-<kind>-<id>.json`
 * so a directory listing is the send order. Sent in order when connected (QoS 1); a file is deleted only
 * after its PUBACK. Bounded by `outboxMaxEvents`: when full the OLDEST entries are dropped, counted (persisted
 * in `overflow.json`) and reported first on the next flush as an "outbox-overflow" event.
 * Delivery is at-least-once: a crash between PUBACK and unlink re-sends; the plane stores each event id once.
 * An entry that cannot be written (the state dir is full: ENOSPC, EDQUOT; or read-only) is kept in memory in its
 * place in the queue, under the same bound, and sent like the others (HW-FAULT-10: a full disk must not silence
 * acks and events); `persistPending()` writes such entries once space returns, so they survive a restart from then.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { PROTOCOL_VERSION, signObject, type Ack, type DeviceEvent, type DeviceEventDetail } from "../../../shared/index.js";
import { z } from "zod";
import { jsonStateFile, writeFileAtomicSync } from "../../../shared/fs/index.js";
import type { Logger } from "../log/index.js";

export type OutboxKind = "event" | "ack";
export type OutboxMessage = { kind: "event"; message: DeviceEvent } | { kind: "ack"; message: Ack };
export type OutboxPublish = (entry: OutboxMessage) => Promise<void>;

const ENTRY = /^(\d{12})-(event|ack)-([A-Za-z0-9_-]+)\.json$/;
const OVERFLOW_FILE = "overflow.json";
/** How many messages were dropped for lack of room and not yet reported (a hint: a corrupt copy counts as none). */
const overflowSchema = z.object({ dropped: z.number().int().positive() });

export interface OutboxOptions {
  dir: string;
  maxEvents: number;
  log: Logger;
  /** Builds the signed "outbox-overflow" event reporting how many entries were dropped. */
  overflowEvent: (dropped: number) => DeviceEvent;
}

export class Outbox {
  private counter = 0;
  private files: string[];
  private dropped: number;
  private flushing: Promise<void> | null = null;
  private flushAgain = false;
  /** Total entries dropped by the bound since this process started (for metrics/tests). */
  droppedTotal = 0;
  /** Entries (by file name) that could not be written yet: sent from here, written by persistPending(). */
  private readonly unwritten = new Map<string, OutboxMessage>();
  private writeFailing = false;

  constructor(private readonly opts: OutboxOptions) {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    this.files = readdirSync(opts.dir).filter((f) => ENTRY.test(f)).sort();
    const last = this.files[this.files.length - 1];
    this.counter = last ? Number(ENTRY.exec(last)![1]) : 0;
    this.dropped = this.readDropped();
  }

  /** Entries waiting to be sent (the pending overflow report counts as one). */
  get depth(): number {
    return this.files.length + (this.dropped > 0 ? 1 : 0);
  }

  /**
   * Queues `entry` durably (fsync) unless it is an ack for a command seq whose ack is already waiting here: the
   * plane re-publishes a command until its ack is recorded, and the agent answers each redelivery with the stored
   * ack (agent/src/commands). Queuing every copy made the outbox grow faster than a loaded plane drained it (one
   * PUBACK per entry), so the ack that mattered sat behind hundreds of copies until its command expired (seen with
   * 100 agents in test/e2e/tls-renewal.test.ts). An agent signs exactly one ack per seq, so one waiting copy is
   * the same message. Returns false when nothing was queued for that reason.
   */
  enqueue(entry: OutboxMessage): boolean {
    if (entry.kind === "ack" && this.files.some((file) => file.endsWith(`-ack-s${entry.message.seq}.json`))) return false;
    const overflow = this.files.length + 1 - this.opts.maxEvents;
    if (overflow > 0) {
      // Oldest EVENTS go first. Acks are never dropped: only the last executed command's ack is kept in state,
      // so a dropped older ack could never be re-sent and the plane would wait for it until it expires. Acks
      // are bounded anyway: one waiting per plane command (see above), and the plane sends few while a device is offline.
      const victims = this.files.filter((file) => file.includes("-event-")).slice(0, overflow);
      if (victims.length > 0) {
        const drop = new Set(victims);
        this.files = this.files.filter((file) => !drop.has(file));
        for (const file of victims) this.remove(file);
        this.dropped += victims.length;
        this.droppedTotal += victims.length;
        this.writeDropped();
        this.opts.log.warn({ dropped: victims.length, droppedPending: this.dropped, maxEvents: this.opts.maxEvents }, "outbox full: dropped oldest events");
      }
    }
    this.counter += 1;
    const id = entry.kind === "event" ? entry.message.id : `s${entry.message.seq}`;
    const name = `${String(this.counter).padStart(12, "0")}-${entry.kind}-${id}.json`;
    this.files.push(name);
    if (!this.write(name, entry)) this.unwritten.set(name, entry);
    return true;
  }

  /** Entries kept only in memory because the state dir refused them. */
  get unwrittenCount(): number {
    return this.unwritten.size;
  }

  /** Writes the entries kept in memory, in order; stops at the first refusal. Never throws. */
  persistPending(): void {
    for (const [name, entry] of this.unwritten) {
      if (!this.write(name, entry)) return;
      this.unwritten.delete(name);
    }
  }

  /** Writes one entry; false (logged once per failing episode) when the state dir refuses it. */
  private write(name: string, entry: OutboxMessage): boolean {
    try {
      writeFileAtomicSync(join(this.opts.dir, name), JSON.stringify(entry), 0o600);
    } catch (error) {
      if (!this.writeFailing) {
        this.writeFailing = true;
        this.opts.log.error({ err: error instanceof Error ? error.message : String(error), dir: this.opts.dir }, "outbox entry kept in memory: the state dir refused it (sent when connected, written when space returns)");
      }
      return false;
    }
    if (this.writeFailing) {
      this.writeFailing = false;
      this.opts.log.info({ dir: this.opts.dir, unwritten: this.unwritten.size }, "outbox writes land again");
    }
    return true;
  }

  /**
   * Sends everything in order through `publish` (which resolves on PUBACK). Stops at the first failure and
   * leaves the rest for the next flush. Concurrent calls coalesce into one running flush.
   */
  flush(publish: OutboxPublish): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      try {
        do {
          this.flushAgain = false;
          await this.drain(publish);
        } while (this.flushAgain);
      } finally {
        this.flushing = null;
      }
    })();
    return this.flushing;
  }

  private async drain(publish: OutboxPublish): Promise<void> {
    if (this.dropped > 0) {
      const dropped = this.dropped;
      await publish({ kind: "event", message: this.opts.overflowEvent(dropped) });
      this.dropped -= dropped;
      this.writeDropped();
    }
    while (this.files.length > 0) {
      const file = this.files[0]!;
      let entry: OutboxMessage;
      try {
        entry = this.unwritten.get(file) ?? (JSON.parse(readFileSync(join(this.opts.dir, file), "utf8")) as OutboxMessage);
      } catch (error) {
        // A corrupt entry cannot be sent; drop it rather than block everything behind it.
        this.opts.log.error({ file, err: error }, "outbox entry unreadable; dropped");
        this.files.shift();
        this.remove(file);
        continue;
      }
      await publish(entry);
      // The bound may have dropped this very file while we were waiting for the PUBACK.
      if (this.files[0] === file) this.files.shift();
      this.remove(file);
    }
  }

  private remove(file: string): void {
    if (this.unwritten.delete(file)) return;
    try {
      unlinkSync(join(this.opts.dir, file));
    } catch {
      // already gone
    }
  }

  private readDropped(): number {
    return jsonStateFile(join(this.opts.dir, OVERFLOW_FILE), overflowSchema).loadHint()?.dropped ?? 0;
  }

  private writeDropped(): void {
    if (this.dropped === 0) return this.remove(OVERFLOW_FILE);
    try {
      jsonStateFile(join(this.opts.dir, OVERFLOW_FILE), overflowSchema).save({ dropped: this.dropped });
    } catch {
      // The count stays in memory and is reported on the next flush; only a restart before then forgets it.
    }
  }
}

export type EventKind = DeviceEvent["kind"];
export type EventSeverity = DeviceEvent["severity"];

/** A fresh event id (also the outbox file suffix); the plane stores each id once. */
export function newEventId(): string {
  return randomBytes(12).toString("base64url");
}

/** Builds a signed event; `detail` is the shape of its kind (shared/protocol/events.ts DEVICE_EVENT_DETAIL). */
export function createEvent<K extends EventKind>(
  deviceId: string,
  privateKey: Uint8Array,
  kind: K,
  severity: EventSeverity,
  detail: DeviceEventDetail<K>,
  nowMs: number,
): DeviceEvent {
  return signObject({ v: PROTOCOL_VERSION, type: "event" as const, deviceId, id: newEventId(), ts: nowMs, kind, severity, detail }, privateKey);
}

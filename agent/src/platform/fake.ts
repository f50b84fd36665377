/** A recording fake Platform for unit tests: remembers every call, never touches the system. */
import { resolve as resolvePath } from "node:path";
import type { Platform, PlatformDescription, QuarantineOptions } from "./types.js";

export type PlatformCall = { op: "quarantine"; opts: QuarantineOptions } | { op: "release" };

export class RecordingPlatform implements Platform {
  readonly calls: PlatformCall[] = [];
  quarantined = false;
  /** Set to make the next quarantine/release throw (then cleared). */
  failNext: Error | null = null;

  constructor(readonly root = "/") {}

  resolve(devicePath: string): string {
    return resolvePath(this.root, `.${devicePath}`);
  }

  async quarantine(opts: QuarantineOptions): Promise<void> {
    this.calls.push({ op: "quarantine", opts: structuredClone(opts) });
    this.throwIfFailing();
    this.quarantined = true;
  }

  async release(): Promise<void> {
    this.calls.push({ op: "release" });
    this.throwIfFailing();
    this.quarantined = false;
  }

  async isQuarantined(): Promise<boolean> {
    return this.quarantined;
  }

  describe(): PlatformDescription {
    return { kind: "recording", root: this.root };
  }

  private throwIfFailing(): void {
    const error = this.failNext;
    if (error) {
      this.failNext = null;
      throw error;
    }
  }
}

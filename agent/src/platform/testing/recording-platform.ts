/**
 * A recording fake Platform for unit tests: remembers every call, never touches the system.
 * It keeps the promises of the Platform interface that the real boards keep (platform/testing/contract.ts):
 * device paths resolve under `root` and escapes are refused, quarantine and release are idempotent, and after
 * disableVendorUpgrade a release leaves the vendor upgrade path disabled (HW-UPD-6).
 */
import { resolve as resolvePath } from "node:path";
import { resolveUnderRoot } from "../paths.js";
import type { Platform, PlatformDescription, QuarantineOptions } from "../types.js";

/** One call the fake saw, in order; quarantine options are a copy taken at the call. */
export type PlatformCall = { op: "quarantine"; opts: QuarantineOptions } | { op: "release" } | { op: "disableVendorUpgrade" };

export class RecordingPlatform implements Platform {
  readonly root: string;
  readonly calls: PlatformCall[] = [];
  quarantined = false;
  /** True once disableVendorUpgrade() was called (enforcing mode): release() then keeps the upgrade path shut. */
  vendorUpgradeLocked = false;
  /** Set to make the next quarantine/release throw (then cleared). */
  failNext: Error | null = null;

  /** `root`: the host directory device paths resolve under (default "/", as on a real board). */
  constructor(root = "/") {
    this.root = resolvePath(root);
  }

  /** Host path of `devicePath` under `root`; throws PlatformError for relative, `..`, NUL or escaping paths. */
  resolve(devicePath: string): string {
    return resolveUnderRoot(this.root, devicePath);
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

  async disableVendorUpgrade(): Promise<void> {
    this.calls.push({ op: "disableVendorUpgrade" });
    this.vendorUpgradeLocked = true;
  }

  /** The control-plane hosts of the last quarantine (sorted, unique), or null when not quarantined. */
  allowedHosts(): string[] | null {
    const last = this.calls.findLast((call) => call.op === "quarantine");
    return this.quarantined && last?.op === "quarantine" ? [...new Set(last.opts.controlPlaneHosts)].sort() : null;
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

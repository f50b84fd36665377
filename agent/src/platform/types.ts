/**
 * The board behind one interface: every side effect on
 * the miner (stop mining, firewall, vendor upgrade path) goes through a Platform, with a recording fake.
 */
export interface QuarantineOptions {
  /** Hosts the board may still reach while quarantined: the control plane's HTTP and MQTT hosts. */
  controlPlaneHosts: string[];
}

/** The two firmware slots of an A/B board (HW-UPD-4). */
export type SlotName = "a" | "b";

export interface SlotStatus {
  /** The slot the board boots (and runs). */
  active: SlotName;
  /** While the active slot is on trial: the slot to fall back to; null once committed. */
  fallback: SlotName | null;
}

/**
 * A/B firmware slots (optional capability; HW-UPD-1). Every method is idempotent and crash-safe: at any point
 * the board boots either the old slot or the new one on trial, never a half-written slot.
 */
export interface UpdateSlots {
  status(): Promise<SlotStatus>;
  /** Writes an image into the slot that is NOT active (never touches the running one); returns that slot. */
  writeInactive(imageFile: string, imageBytes: number): Promise<SlotName>;
  /** Marks `slot` pending-boot with the current slot as fallback and "reboots" into it (trial boot). */
  bootTrial(slot: SlotName): Promise<void>;
  /** Health of the running (active) slot. */
  healthCheck(): Promise<{ healthy: boolean; reason?: string }>;
  /** Keeps the active slot: clears the trial flag. */
  commit(): Promise<void>;
  /** Boots the fallback slot again and clears the trial flag (no-op when not on trial). */
  rollback(): Promise<void>;
}

/** Control of the mining process (optional capability; HW-GUARD-1): guards restart it after restoring its config. */
export interface MinerControl {
  /** Restarts the miner so it re-reads its config file (pools, api-allow). Idempotent. */
  restart(): Promise<void>;
}

export interface PlatformDescription {
  kind: string;
  root: string;
  [key: string]: unknown;
}

export interface Platform {
  /** Filesystem root under which device paths resolve ("/" on a real board). */
  readonly root: string;
  /** Maps a device path (`/config/cgminer.conf`) to a host path. */
  resolve(devicePath: string): string;
  /** Stop mining, restrict the network to the control plane, block the vendor upgrade path. Idempotent. */
  quarantine(opts: QuarantineOptions): Promise<void>;
  /** Undo quarantine. Idempotent. */
  release(): Promise<void>;
  isQuarantined(): Promise<boolean>;
  describe(): PlatformDescription;
  /** The miner process (restart after a pool/api-allow restore); absent on boards where the agent cannot. */
  miner?: MinerControl;
  /** A/B firmware slots for signed updates; absent on boards that cannot update through the agent. */
  slots?: UpdateSlots;
  /** Enforcing mode: disable the vendor upgrade path for good (not only in quarantine). Idempotent. */
  disableVendorUpgrade?(): Promise<void>;
}

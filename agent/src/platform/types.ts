/**
 * The board behind one interface (ARCHITECTURE "Trust and containment"; STYLE rule 7): every side effect on
 * the miner (stop mining, firewall, vendor upgrade path) goes through a Platform, with a recording fake.
 */
export interface QuarantineOptions {
  /** Hosts the board may still reach while quarantined: the control plane's HTTP and MQTT hosts. */
  controlPlaneHosts: string[];
}

/** Control of the mining process (optional capability; issue 4): guards restart it after restoring its config. */
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
}

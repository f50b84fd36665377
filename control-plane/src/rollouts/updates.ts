/**
 * Wiring of the plane's signed-update half (called by plane/index.ts): the TUF repository with its online keys
 * and the rollout engine on the service's signed command path, plus the timer work each needs.
 */
import type pino from "pino";
import type { KeyPair } from "../../../shared/crypto/index.js";
import type { ControlPlaneConfig } from "../config/index.js";
import type { Database } from "../db/index.js";
import { createServiceContext, type DevicePublisher, type ServiceOptions } from "../service/index.js";
import type { SharedSecrets } from "../replicas/index.js";
import { createTufRepository, loadOrCreateOnlineKeys, type TufRepository } from "../tuf/index.js";
import { createRolloutService } from "./index.js";
import type { RolloutService } from "./types.js";

export interface Updates {
  tuf: TufRepository;
  rollouts: RolloutService;
  /** Timer work: [name, interval, task] for the plane's non-overlapping `every`. */
  timers: Array<[string, number, () => Promise<void>]>;
}

export async function createUpdates(deps: {
  config: ControlPlaneConfig;
  db: Database;
  publisher: DevicePublisher;
  commandKey: KeyPair;
  options: ServiceOptions;
  logger: pino.Logger;
  /** Replicas on PostgreSQL: the TUF online keys all of them share (HW-HA-1). */
  shared?: SharedSecrets | null;
}): Promise<Updates> {
  const { config, logger } = deps;
  const keys = await loadOrCreateOnlineKeys(config.dataDir, deps.shared ?? null);
  if (keys.created) logger.warn({ dataDir: config.dataDir }, "TUF online snapshot/timestamp keys created; export them with GET /api/v1/tuf/online-keys for `release root init`");
  const tuf = createTufRepository({
    db: deps.db,
    dataDir: config.dataDir,
    ...(config.tufImageDir === undefined ? {} : { imageDir: config.tufImageDir }),
    keys,
    options: { timestampTtlMs: config.tufTimestampTtlMs, snapshotTtlMs: config.tufSnapshotTtlMs, maxImageBytes: config.tufMaxImageBytes },
    logger,
  });
  const ctx = createServiceContext({ db: deps.db, publisher: deps.publisher, commandKey: deps.commandKey, logger, options: deps.options });
  const rollouts = createRolloutService({ ctx, targets: tuf, updateCommandTtlMs: config.updateCommandTtlMs });
  return {
    tuf,
    rollouts,
    timers: [
      ["renewTufMetadata", config.tufRenewCheckMs, async () => void (await tuf.renewIfDue())],
      ["rolloutTick", config.rolloutTickMs, () => rollouts.tick()],
    ],
  };
}

/**
 * Control plane entry point: configuration, logger, plane, signals. Nothing else lives here.
 * Exit codes: 0 after a graceful stop, 1 on a start-up error (a ConfigError prints one line, no stack).
 */
import { pino } from "pino";
import { ConfigError } from "../../shared/errors/index.js";
import { describeConfig, loadConfig } from "./config/index.js";
import { startPlane, type Plane } from "./plane/index.js";

const bootLogger = pino({ base: { service: "control-plane" } });

async function main(): Promise<void> {
  // HW-DATA-1: every file this process creates (database files included) is private to its user.
  process.umask(0o077);
  const config = loadConfig();
  const logger = pino({ level: config.logLevel, base: { service: "control-plane" } });
  logger.debug({ config: describeConfig(config) }, "configuration");

  // Handlers go in before the plane starts, so a signal right after the ready line is never missed.
  let plane: Plane | null = null;
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting without waiting");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    if (plane) shutDown(plane);
  };
  const shutDown = (running: Plane): void => {
    running.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);

  plane = await startPlane(config, logger);
  if (stopping) shutDown(plane);
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    bootLogger.fatal({ option: error.option }, error.message);
  } else {
    bootLogger.fatal({ err: error }, "control plane failed to start");
  }
  // pino writes synchronously to stdout by default, so the line is out before we exit.
  process.exit(1);
});

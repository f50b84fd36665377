/** The real services on a test database, for the contract suites of service/testing (tests only). */
import pino from "pino";
import { generateKeyPair } from "../../../../shared/crypto/index.js";
import type { TestDatabase } from "../../db/test-postgres.js";
import { createServices, type DevicePublisher, type Services } from "../index.js";

/** A publisher to no device: commands and challenges are dropped (the contract suites look at answers only). */
const NOWHERE: DevicePublisher = { publish: async () => {}, isConnected: () => false };

/**
 * Opens a database with `open` and the services on it, with a logger that writes nothing and the clock fixed at
 * `nowMs` (ms since the epoch, the test's start). `close` stops the services, then the database.
 */
export async function openServices(open: () => Promise<TestDatabase>): Promise<{ services: Services; nowMs: number; close(): Promise<void> }> {
  const database = await open();
  const nowMs = Date.now();
  const services = createServices({
    db: database.db,
    publisher: NOWHERE,
    commandKey: generateKeyPair(),
    logger: pino({ level: "silent" }),
    now: () => nowMs,
    options: { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "contraindicated", commandRetryMs: 1_000 },
  });
  return {
    services,
    nowMs,
    async close() {
      await services.close();
      await database.close();
    },
  };
}

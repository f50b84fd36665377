import { defineConfig } from "vitest/config";

/**
 * The plane-side fault campaigns (docs/reliability.md): thousands of simulated devices, real processes, an own
 * PostgreSQL cluster restarted and a plane SIGKILLed. Minutes each, so not part of `npm test` (vitest.config.ts
 * excludes them; the agent-side fault tests next to them stay there).
 */
export const FAULT_CAMPAIGNS = ["test/faults/postgres-restart.test.ts", "test/faults/broker-kill.test.ts"];

/** `npm run test:faults`: those campaigns, one at a time (each loads the machine on its own). CI runs it after `npm test`. */
export default defineConfig({
  test: {
    include: FAULT_CAMPAIGNS,
    testTimeout: 900_000,
    hookTimeout: 600_000,
    pool: "forks",
    maxWorkers: 1,
  },
});

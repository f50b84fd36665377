import { defineConfig } from "vitest/config";

/**
 * `npm run test:faults`: the fault campaigns (test/faults; docs/reliability.md): thousands of simulated devices,
 * real processes, an own PostgreSQL cluster restarted and a plane SIGKILLed. Minutes each, so not part of
 * `npm test`; one campaign at a time (each loads the machine on its own). CI runs it after `npm test`.
 */
export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    testTimeout: 900_000,
    hookTimeout: 600_000,
    pool: "forks",
    maxWorkers: 1,
  },
});

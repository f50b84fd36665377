import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["{agent,control-plane,shared,scripts,test,fuzz}/**/*.test.ts"],
    // The emulated arm64 board boots a whole machine in software (minutes): its own target, npm run test:board.
    // The fault campaigns run thousands of devices through restarts (minutes): npm run test:faults.
    exclude: ["**/node_modules/**", "test/board/**", "test/faults/**"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    // End-to-end suites start real processes; two cores cannot run many at once.
    maxWorkers: 2,
  },
});

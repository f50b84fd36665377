import { defineConfig } from "vitest/config";
import { FAULT_CAMPAIGNS } from "./vitest.faults.config.js";

export default defineConfig({
  test: {
    include: ["{agent,control-plane,shared,scripts,test,fuzz}/**/*.test.ts"],
    // The emulated arm64 board boots a whole machine in software (minutes): its own target, npm run test:board.
    // The plane-side fault campaigns run thousands of devices through restarts (minutes): npm run test:faults.
    // The agent-side fault tests (test/faults/agent-*.test.ts) stay in this run.
    exclude: ["**/node_modules/**", "test/board/**", ...FAULT_CAMPAIGNS],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    // End-to-end suites start real processes; two cores cannot run many at once.
    maxWorkers: 2,
  },
});

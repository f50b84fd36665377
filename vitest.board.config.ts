import { defineConfig } from "vitest/config";

/** `npm run test:board`: the emulated arm64 board (test/board; docs/board.md). One board at a time. */
export default defineConfig({
  test: {
    include: ["test/board/**/*.test.ts"],
    testTimeout: 600_000,
    hookTimeout: 1_200_000,
    pool: "forks",
    maxWorkers: 1,
  },
});

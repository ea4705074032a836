import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // An agent process that exits unasked fails the test (issue 20 §2).
    // EDGEFLEET_TEST_STORE=postgres: in-process fleet servers on PostgreSQL (issue 14); a no-op otherwise.
    setupFiles: ["test/helpers/fail-on-agent-exit.ts", "test/helpers/store-switch.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Integration and e2e tests start real processes; two cores are the norm here.
    fileParallelism: true,
    maxWorkers: 2,
    pool: "forks",
  },
});

import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // An agent process that exits unasked fails the test (issue 20 §2).
    setupFiles: ["test/helpers/fail-on-agent-exit.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Integration and e2e tests start real processes; two cores are the norm here.
    fileParallelism: true,
    maxWorkers: 2,
    pool: "forks",
  },
});

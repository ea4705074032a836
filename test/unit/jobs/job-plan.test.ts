import { describe, expect, it } from "vitest";
import { JobDefinitionSchema, JobsConfigSchema } from "../../../agent/jobs/job-config.js";
import {
  chunkItems,
  isRetryable,
  itemFileName,
  itemFromFileName,
  paceDelayMs,
  progressStepReached,
  remainingItems,
  runIdFor,
  sortItems,
} from "../../../agent/jobs/job-plan.js";

const job = {
  name: "nightly",
  schedule: "0 3 * * *",
  model: "tiny",
  input: { kind: "dir", path: "/in" },
  output: { kind: "sqlite", path: "/out.db", table: "results" },
};

describe("job planning", () => {
  it("remaining items keep input order and skip exactly the done ones", () => {
    expect(remainingItems(["a", "b", "c", "d"], new Set(["b", "d", "zz"]))).toEqual(["a", "c"]);
    expect(remainingItems(["a"], new Set())).toEqual(["a"]);
  });

  it("chunks cover every item once, in order", () => {
    const items = Array.from({ length: 10 }, (_, i) => i);
    const chunks = chunkItems(items, 4);
    expect(chunks.map((c) => c.length)).toEqual([4, 4, 2]);
    expect(chunks.flat()).toEqual(items);
    expect(chunkItems([], 3)).toEqual([]);
    expect(() => chunkItems(items, 0)).toThrow(RangeError);
  });

  it("run ids sort by start time and differ per counter", () => {
    const a = runIdFor(Date.UTC(2025, 0, 1, 12, 0, 0), 1);
    const b = runIdFor(Date.UTC(2025, 0, 1, 12, 0, 0), 2);
    const c = runIdFor(Date.UTC(2025, 0, 2, 0, 0, 0), 3);
    expect(a).toBe("20250101T120000Z-0001");
    expect(a < b && b < c).toBe(true);
  });

  it("sorts ids by code unit, independent of locale", () => {
    expect(sortItems(["b", "B", "a", "10", "9"])).toEqual(["10", "9", "B", "a", "b"]);
  });

  it("reports progress every 10 % and at the end", () => {
    const reported: number[] = [];
    let last = 0;
    for (let done = 128; done <= 10_000 + 127; done += 128) {
      const d = Math.min(done, 10_000);
      if (progressStepReached(last, d, 10_000)) {
        reported.push(d);
        last = d;
      }
    }
    expect(reported.length).toBe(10);
    expect(reported.at(-1)).toBe(10_000);
    expect(progressStepReached(5, 5, 10)).toBe(false);
    expect(progressStepReached(0, 1, 0)).toBe(false);
  });

  it("paces to maxItemsPerSecond", () => {
    expect(paceDelayMs(100, 0, undefined)).toBe(0);
    expect(paceDelayMs(100, 0, 1000)).toBe(100);
    expect(paceDelayMs(100, 60, 1000)).toBe(40);
    expect(paceDelayMs(100, 500, 1000)).toBe(0);
  });

  it("maps item ids to safe file names and back", () => {
    for (const id of ["item-1", "a/b", "..", "x.y", "ü %"]) {
      const f = itemFileName(id);
      expect(f).not.toContain("/");
      expect(f.slice(0, -".json".length)).not.toContain(".");
      expect(itemFromFileName(f)).toBe(id);
    }
    expect(itemFromFileName("x.json.123.tmp")).toBeNull();
  });

  it("retries only model-availability errors", () => {
    expect(isRetryable("MODEL_NOT_READY")).toBe(true);
    expect(isRetryable("HOST_CRASHED")).toBe(true);
    expect(isRetryable("INVALID_TENSOR")).toBe(false);
  });
});

describe("job definitions", () => {
  it("fills defaults", () => {
    const j = JobDefinitionSchema.parse(job);
    expect(j).toMatchObject({ mode: "incremental", chunkSize: 128, concurrency: 4, enabled: true });
  });

  it("rejects bad cron expressions, SQL names and duplicate names", () => {
    expect(JobDefinitionSchema.safeParse({ ...job, schedule: "every day" }).success).toBe(false);
    const badTable = { ...job, output: { kind: "sqlite", path: "/o.db", table: "x; DROP TABLE y" } };
    expect(JobDefinitionSchema.safeParse(badTable).success).toBe(false);
    expect(JobsConfigSchema.safeParse([job, job]).success).toBe(false);
    expect(JobsConfigSchema.parse(undefined)).toEqual([]);
  });
});

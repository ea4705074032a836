import { describe, expect, it } from "vitest";
import { stageDurations, stageMedians, type Traced } from "../../../scripts/bench/stages.js";

/** The benchmarks' per-stage breakdown (issue 13): pure arithmetic over monotonic timestamps. */
const trace = (offset: number): Traced => ({
  client0: offset,
  client1: offset + 20,
  http: { received: offset + 1, parsed: offset + 3, served: offset + 16, serialized: offset + 18 },
  run: {
    sent: offset + 4,
    received: offset + 6,
    ortStart: offset + 7,
    ortEnd: offset + 11,
    replying: offset + 12,
    answered: offset + 15,
  },
});

describe("bench stage breakdown", () => {
  it("splits a traced socket request into consecutive stages that add up to the total", () => {
    const d = stageDurations(trace(100));
    expect(d).toEqual({
      request: 1,
      bodyParse: 2,
      validate: 1,
      toHost: 2,
      hostIn: 1,
      ort: 4,
      hostOut: 1,
      fromHost: 3,
      agentAfter: 1,
      serialize: 2,
      reply: 2,
    });
    expect(Object.values(d).reduce((a, b) => a + b, 0)).toBe(20);
  });

  it("without HTTP timestamps, validate and agentAfter run from and to the caller", () => {
    const { http: _, ...t } = trace(0);
    const d = stageDurations(t);
    expect(d.validate).toBe(4);
    expect(d.agentAfter).toBe(5);
    expect(d.request).toBeUndefined();
  });

  it("reports the median of each stage and of the total", () => {
    const traces = [trace(0), trace(50), { ...trace(100), client1: 200 }];
    const m = stageMedians(traces);
    expect(m.ort).toBe(4);
    expect(m.totalP50).toBe(20);
    expect(m.sumOfMedians).toBe(20);
  });
});

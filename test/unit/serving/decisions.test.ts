import { describe, expect, it } from "vitest";
import { concatRows, planBatch, splitRows } from "../../../agent/serving/batch-assembly.js";
import { swapGate } from "../../../agent/serving/lock-decisions.js";
import { cacheKey, createLruCache } from "../../../agent/serving/response-cache.js";
import { createShadowStats } from "../../../agent/serving/shadow-stats.js";
import { chooseArm, hashUnit, outputsAgree, sampleShadow } from "../../../agent/serving/strategy-decisions.js";
import type { RawTensor } from "../../../shared/tensors.js";
import { seeded } from "../../helpers/onnx-builder.js";

const f32 = (dims: number[], xs: number[]): RawTensor => ({ type: "float32", dims, data: Float32Array.from(xs) });

describe("A/B arm choice", () => {
  it("splits 2,000 unkeyed requests within ±3 points of the weight", () => {
    for (const weight of [0.1, 0.3, 0.5]) {
      const r = seeded(Math.round(weight * 100));
      let cand = 0;
      for (let i = 0; i < 2000; i++) if (chooseArm(weight, undefined, r) === "candidate") cand++;
      expect(Math.abs(cand / 2000 - weight)).toBeLessThanOrEqual(0.03);
    }
  });

  it("splits 2,000 distinct keys within ±3 points, and a key always gets the same arm", () => {
    const never = () => {
      throw new Error("keyed choice must not use randomness");
    };
    let cand = 0;
    for (let i = 0; i < 2000; i++) {
      const arm = chooseArm(0.2, `user-${i}`, never);
      if (arm === "candidate") cand++;
      for (let k = 0; k < 3; k++) expect(chooseArm(0.2, `user-${i}`, never)).toBe(arm);
    }
    expect(Math.abs(cand / 2000 - 0.2)).toBeLessThanOrEqual(0.03);
  });

  it("raising the weight only moves keys from control to candidate", () => {
    for (let i = 0; i < 500; i++) {
      if (chooseArm(0.2, `k${i}`, Math.random) === "candidate")
        expect(chooseArm(0.5, `k${i}`, Math.random)).toBe("candidate");
    }
    expect(hashUnit("a")).not.toBe(hashUnit("b"));
  });
});

describe("shadow sampling and agreement", () => {
  it("samples by rate", () => {
    expect(sampleShadow(0, () => 0)).toBe(false);
    expect(sampleShadow(0.5, () => 0.7)).toBe(false);
    expect(sampleShadow(0.5, () => 0.2)).toBe(true);
    expect(sampleShadow(1, () => 0.999)).toBe(true);
  });

  it("agreement: tolerance for floats, exact otherwise, shape and names must match", () => {
    expect(outputsAgree({ y: f32([2], [1, 2]) }, { y: f32([2], [1.00001, 2]) })).toBe(true);
    expect(outputsAgree({ y: f32([2], [1, 2]) }, { y: f32([2], [1.1, 2]) })).toBe(false);
    expect(outputsAgree({ y: f32([2], [1, 2]) }, { y: f32([1, 2], [1, 2]) })).toBe(false);
    expect(outputsAgree({ y: f32([1], [Number.NaN]) }, { y: f32([1], [Number.NaN]) })).toBe(true);
    expect(outputsAgree({ y: f32([1], [1]) }, { z: f32([1], [1]) })).toBe(false);
    const i = (x: number): RawTensor => ({ type: "int64", dims: [1], data: BigInt64Array.from([BigInt(x)]) });
    expect(outputsAgree({ y: i(3) }, { y: i(3) })).toBe(true);
    expect(outputsAgree({ y: i(3) }, { y: i(4) })).toBe(false);
  });

  it("figures: agreement percent and latency percentiles per candidate", () => {
    const s = createShadowStats();
    const who = { model: "m", version: "2", sha256: "s2", mode: "shadow" as const };
    for (let i = 0; i < 10; i++) s.record(who, { ok: true, agreed: i < 7, candidateMs: i, controlMs: 1 });
    s.record(who, { ok: true, skippedBusy: true });
    const f = s.get("s2")!;
    expect(f.compared).toBe(10);
    expect(f.agreementPercent).toBe(70);
    expect(f.skippedBusy).toBe(1);
    expect(f.candidateP95Ms).toBe(9);
    s.reset("s2");
    expect(s.get("s2")).toBeNull();
  });
});

describe("dynamic batch planning", () => {
  const p = { maxBatchSize: 8, preferredBatchSizes: [4, 8], maxQueueDelayMicros: 1000 };
  it("waits for company, dispatches at a preferred size, a full batch, or the delay", () => {
    expect(planBatch([], 0, p)).toEqual({ kind: "idle" });
    expect(planBatch([1, 1], 100, p)).toEqual({ kind: "wait", micros: 900 });
    expect(planBatch([1, 1, 1, 1], 0, p)).toEqual({ kind: "dispatch", count: 4 });
    expect(planBatch([1, 1], 1000, p)).toEqual({ kind: "dispatch", count: 2 });
    expect(planBatch([4, 4, 1], 0, p)).toEqual({ kind: "dispatch", count: 2 });
    // The next request would not fit: waiting cannot grow the batch.
    expect(planBatch([3, 6], 0, p)).toEqual({ kind: "dispatch", count: 1 });
    // An oversize request still goes, alone.
    expect(planBatch([20], 0, p)).toEqual({ kind: "dispatch", count: 1 });
  });

  it("stacks along dim 0 and splits back", () => {
    const a = f32([1, 2], [1, 2]);
    const b = f32([2, 2], [3, 4, 5, 6]);
    const both = concatRows([a, b]);
    expect(both.dims).toEqual([3, 2]);
    expect([...(both.data as Float32Array)]).toEqual([1, 2, 3, 4, 5, 6]);
    const [x, y] = splitRows(both, [1, 2]);
    expect([...(x!.data as Float32Array)]).toEqual([1, 2]);
    expect(y!.dims).toEqual([2, 2]);
    const s = concatRows([
      { type: "string", dims: [1], data: ["a"] },
      { type: "string", dims: [1], data: ["b"] },
    ]);
    expect(s.data).toEqual(["a", "b"]);
  });
});

describe("response cache", () => {
  it("keys by version hash and input bytes", () => {
    const x = { x: f32([1, 2], [1, 2]) };
    expect(cacheKey("v1", x)).toBe(cacheKey("v1", { x: f32([1, 2], [1, 2]) }));
    expect(cacheKey("v1", x)).not.toBe(cacheKey("v2", x));
    expect(cacheKey("v1", x)).not.toBe(cacheKey("v1", { x: f32([2, 1], [1, 2]) }));
    expect(cacheKey("v1", x)).not.toBe(cacheKey("v1", x, ["y"]));
  });

  it("evicts the least recently used entry by count and by bytes", () => {
    const c = createLruCache<number>({ maxEntries: 2, maxBytes: 100 });
    c.set("a", 1, 10);
    c.set("b", 2, 10);
    expect(c.get("a")).toBe(1); // a is now the most recent
    c.set("c", 3, 10);
    expect(c.get("b")).toBeUndefined();
    c.set("d", 4, 95);
    expect(c.stats().entries).toBe(1);
    c.set("huge", 5, 1000);
    expect(c.get("huge")).toBeUndefined();
  });
});

describe("update lock gate", () => {
  const lock = (id: string, expiresAt: number) => ({ id, holder: "", acquiredAt: 0, expiresAt });
  it("proceeds without live locks, waits for the next expiry, gives up waiting at the deadline", () => {
    expect(swapGate([], 10, 100)).toEqual({ kind: "proceed", reason: "no-locks" });
    expect(swapGate([lock("a", 5)], 10, 100)).toEqual({ kind: "proceed", reason: "no-locks" });
    const w = swapGate([lock("a", 50), lock("b", 30)], 10, 100);
    expect(w.kind === "wait" && w.until).toBe(30);
    const d = swapGate([lock("a", 500)], 10, 100);
    expect(d.kind === "wait" && d.until).toBe(100);
    expect(swapGate([lock("a", 500)], 100, 100)).toEqual({ kind: "proceed", reason: "deadline" });
  });
});

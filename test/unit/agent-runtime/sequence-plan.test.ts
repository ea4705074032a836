import { describe, expect, it } from "vitest";
import { createHostSequences } from "../../../agent/runtime/host-sequences.js";
import {
  appInputSpecs,
  expiredSequences,
  limitsFor,
  nextExpiry,
  planStep,
  type SequenceEntry,
} from "../../../agent/runtime/sequence-plan.js";
import { slideWindow } from "../../../agent/runtime/sequence-window.js";
import { createFakeClock } from "../../../shared/clock.js";
import { ManifestSchema } from "../../../shared/schemas/manifest.js";
import { type SequenceSpec, sequenceSpecProblems } from "../../../shared/schemas/sequence.js";
import type { RawTensor } from "../../../shared/tensors.js";

const limits = { idleMs: 1_000, maxLive: 2 };
const entry = (id: string, lastUsed: number, extra: Partial<SequenceEntry> = {}): SequenceEntry => ({
  id,
  model: "vad",
  pid: 42,
  lastUsed,
  busy: 0,
  lost: null,
  ...extra,
});

describe("sequence planner (issue 18)", () => {
  it("starts, continues, refuses unknown frames and starts past the limit", () => {
    expect(planStep(undefined, { id: "a", model: "vad", start: true }, 0, limits, 42)).toEqual({
      kind: "start",
      replaces: false,
    });
    expect(planStep(entry("a", 0), { id: "a", model: "vad", start: false }, 1, limits, 42)).toEqual({
      kind: "continue",
    });
    const unknown = planStep(undefined, { id: "b", model: "vad", start: false }, 1, limits, 42);
    expect(unknown.kind === "refuse" && unknown.error.code).toBe("SEQUENCE_UNKNOWN");
    const full = planStep(undefined, { id: "c", model: "vad", start: true }, 2, limits, 42);
    expect(full.kind === "refuse" && full.error.code).toBe("SEQUENCE_LIMIT");
    // A restart of a live id frees its own slot: allowed at the limit.
    expect(planStep(entry("a", 0), { id: "a", model: "vad", start: true }, 2, limits, 42)).toEqual({
      kind: "start",
      replaces: true,
    });
  });

  it("calls a sequence lost when its host changed or died", () => {
    const moved = planStep(entry("a", 0), { id: "a", model: "vad", start: false }, 1, limits, 43);
    expect(moved.kind === "refuse" && moved.error.code).toBe("SEQUENCE_LOST");
    const dead = planStep(entry("a", 0, { lost: "crashed" }), { id: "a", model: "vad", start: false }, 0, limits, 42);
    expect(dead.kind === "refuse" && dead.error.message).toContain("crashed");
  });

  it("expires idle sequences at their timeout on a fake clock, never busy ones", () => {
    const clock = createFakeClock(10_000);
    const idle = (m: string) => (m === "vad" ? 1_000 : 5_000);
    const entries = [
      entry("a", 10_000),
      entry("b", 10_500),
      entry("c", 10_000, { busy: 1 }),
      entry("d", 10_000, { model: "kws" }),
    ];
    expect(nextExpiry(entries, idle)).toBe(11_000);
    clock.advance(999);
    expect(expiredSequences(entries, clock.now(), idle)).toEqual([]);
    clock.advance(1);
    expect(expiredSequences(entries, clock.now(), idle).map((e) => e.id)).toEqual(["a"]);
    clock.advance(500);
    expect(expiredSequences(entries, clock.now(), idle).map((e) => e.id)).toEqual(["a", "b"]);
    expect(nextExpiry([entries[2]!], idle)).toBeNull();
  });
});

const SPEC: SequenceSpec = {
  state: [{ input: "state", output: "stateN", initial: { datatype: "FP32", shape: [2], fill: 0.5 } }],
  constants: [{ input: "sr", value: { datatype: "INT64", shape: [], data: [16000] } }],
  windows: [],
  stateCompatibleWith: [],
};

describe("sequence spec in the manifest", () => {
  const manifest = {
    _type: "manifest",
    model: { name: "vad", version: "1.0.0", variant: "fp32" },
    releaseCounter: 1,
    createdAt: "2025-01-01T00:00:00Z",
    files: [{ path: "model.onnx", size: 1, sha256: "0".repeat(64) }],
    inputs: [
      { name: "input", datatype: "FP32", shape: [1, -1] },
      { name: "state", datatype: "FP32", shape: [2] },
      { name: "sr", datatype: "INT64", shape: [] },
    ],
    outputs: [{ name: "stateN", datatype: "FP32", shape: [2] }],
    opset: 16,
    compatibility: {},
  };

  it("is optional (older manifests parse unchanged) and gives app inputs and limits", () => {
    expect(ManifestSchema.parse(manifest).sequence).toBeUndefined();
    const m = ManifestSchema.parse({ ...manifest, sequence: { ...SPEC, maxSequences: 3 } });
    expect(appInputSpecs(m).map((i) => i.name)).toEqual(["input"]);
    expect(limitsFor(m, { idleMs: 60_000, maxLive: 64 })).toEqual({ idleMs: 60_000, maxLive: 3 });
    const twice = { ...SPEC, constants: [{ input: "state", value: SPEC.constants[0]!.value }] };
    expect(ManifestSchema.safeParse({ ...manifest, sequence: twice }).success).toBe(false);
    const shortData = { ...SPEC, constants: [{ input: "sr", value: { datatype: "INT64", shape: [2], data: [1] } }] };
    expect(ManifestSchema.safeParse({ ...manifest, sequence: shortData }).success).toBe(false);
  });
});

describe("host-side sequence state", () => {
  const f32 = (...v: number[]): RawTensor => ({ type: "float32", dims: [v.length], data: Float32Array.from(v) });

  it("feeds the initial state at a start, the last output after, and changes nothing on a failed run", () => {
    const h = createHostSequences(SPEC);
    const first = h.feeds({ id: "a", start: true, end: false }, { input: f32(1) });
    expect(Array.from(first.state!.data as Float32Array)).toEqual([0.5, 0.5]);
    expect(first.sr!.data).toEqual(BigInt64Array.from([16000n]));
    // Not committed (the run failed): the sequence does not exist yet.
    expect(() => h.feeds({ id: "a", start: false, end: false }, { input: f32(1) })).toThrow(/no state/);
    const reply = h.commit({ id: "a", start: true, end: false }, { stateN: f32(7, 8), output: f32(0.9) }, undefined);
    expect(Object.keys(reply)).toEqual(["output"]); // the state stays in the host
    expect(
      Array.from(h.feeds({ id: "a", start: false, end: false }, { input: f32(1) }).state!.data as Float32Array),
    ).toEqual([7, 8]);
    expect(h.fetches(["output"])).toEqual(["output", "stateN"]);
    expect(() => h.feeds({ id: "a", start: false, end: false }, { state: f32(0, 0) })).toThrow(/implicit state/);
    h.commit({ id: "a", start: false, end: true }, { stateN: f32(1, 1), output: f32(0.1) }, ["output"]);
    expect(h.size()).toBe(0);
  });

  it("exports a sequence's state and imports it elsewhere only when it fits the spec", () => {
    const a = createHostSequences(SPEC);
    const b = createHostSequences(SPEC);
    a.commit({ id: "s", start: true, end: false }, { stateN: f32(3, 4), output: f32(1) }, undefined);
    const states = a.export(["s", "absent"]);
    expect(Object.keys(states)).toEqual(["s"]);
    expect(b.import(states)).toBe(1);
    expect(Array.from(b.feeds({ id: "s", start: false, end: false }, {}).state!.data as Float32Array)).toEqual([3, 4]);
    expect(() => b.import({ t: { state: f32(1, 2, 3) } })).toThrow(/does not fit/);
    expect(() => b.import({ t: {} })).toThrow(/does not fit/);
  });
});

describe("sliding window", () => {
  it("drops the k oldest steps along the axis and appends the frame, per outer block", () => {
    // dims [2, 3, 2]: two outer blocks of a 3-step window of pairs.
    const window: RawTensor = {
      type: "float32",
      dims: [2, 3, 2],
      data: Float32Array.from([1, 1, 2, 2, 3, 3, 10, 10, 20, 20, 30, 30]),
    };
    const frame: RawTensor = {
      type: "float32",
      dims: [2, 2, 2],
      data: Float32Array.from([4, 4, 5, 5, 40, 40, 50, 50]),
    };
    const out = slideWindow("x", window, frame, 1);
    expect(Array.from(out.data as Float32Array)).toEqual([3, 3, 4, 4, 5, 5, 30, 30, 40, 40, 50, 50]);
    expect(Array.from(window.data as Float32Array)).toEqual([1, 1, 2, 2, 3, 3, 10, 10, 20, 20, 30, 30]);
    const tooLong: RawTensor = { type: "float32", dims: [2, 4, 2], data: new Float32Array(16) };
    expect(() => slideWindow("x", window, tooLong, 1)).toThrow(/1 to 3 steps/);
    const otherDim: RawTensor = { type: "float32", dims: [2, 1, 3], data: new Float32Array(6) };
    expect(() => slideWindow("x", window, otherDim, 1)).toThrow(/must be float32/);
  });
});

describe("sequence spec against the model", () => {
  const inputs = [
    { name: "input", datatype: "FP32" as const, shape: [1, -1] },
    { name: "state", datatype: "FP32" as const, shape: [2, "batch", 128] },
    { name: "sr", datatype: "INT64" as const, shape: [] },
  ];
  const outputs = [{ name: "stateN", datatype: "FP32" as const, shape: [2, -1, 128] }];
  const spec: SequenceSpec = {
    state: [{ input: "state", output: "stateN", initial: { datatype: "FP32", shape: [2, 1, 128], fill: 0 } }],
    windows: [],
    constants: [{ input: "sr", value: { datatype: "INT64", shape: [], data: [16000] } }],
    stateCompatibleWith: [],
  };

  it("finds nothing wrong with a spec that fits, and names each misfit", () => {
    expect(sequenceSpecProblems(spec, inputs, outputs)).toEqual([]);
    const bad: SequenceSpec = {
      ...spec,
      state: [{ input: "state", output: "hn", initial: { datatype: "FP32", shape: [2, 1, 64], fill: 0 } }],
      constants: [{ input: "rate", value: { datatype: "FP32", shape: [], data: [1] } }],
    };
    const problems = sequenceSpecProblems(bad, inputs, outputs);
    expect(problems).toHaveLength(3);
    expect(problems.join("\n")).toMatch(/shape \[2,1,64\][\s\S]*"hn" is not an output[\s\S]*"rate" is not an input/);
  });
});

import { describe, expect, it } from "vitest";
import { apiErrorReply } from "../../../agent/api/api-errors.js";
import { checkParameters, decodeInferRequest } from "../../../agent/api/v2-infer.js";
import {
  attributeRunFailure,
  classifyRunFailure,
  createShapeMemory,
  isModelFault,
  sanitizeMessage,
  shapeSignature,
} from "../../../agent/runtime/run-failures.js";
import { formatShape, validateInputs } from "../../../agent/runtime/tensor-validation.js";
import { EdgeFleetError, ERROR_CODES } from "../../../shared/errors.js";
import { httpStatusFor } from "../../../shared/http-status.js";
import type { RawTensor } from "../../../shared/tensors.js";

/** Issue 20 §3/§7: blame and words of a failed run; parameters refused at every level; degenerate shapes. */

// Messages exactly as onnxruntime-node 1.x gives them for PP-OCRv4 rec (captured from the real model).
const ZERO_BATCH =
  "Non-zero status code returned while running Reshape node. Name:'p2o.Reshape.64' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:84 onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, onnxruntime::TensorShapeVector&, bool) size != 0 && (input_shape_size % size) == 0 was false. The input tensor cannot be reshaped to the requested shape. Input shape:{0,120,1,1}, requested shape:{0,120,-1}\n";
const ZERO_WIDTH =
  "Non-zero status code returned while running Conv node. Name:'batch_norm_2.tmp_2_nchwc' Status Message: Invalid input shape: {48,0}";
const BAD_DIMS =
  "Got invalid dimensions for input: x for the following indices\n index: 2 Got: 47 Expected: 48\n Please fix either the inputs/outputs or the model.";
const OTHER =
  "Non-zero status code returned while running MatMul node. Name:'m' Status Message: /src/onnxruntime/core/framework/bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 123";

const feeds: Record<string, RawTensor> = { x: { type: "float32", dims: [0, 3, 48, 8], data: new Float32Array(0) } };

describe("onnxruntime messages never leak internal paths", () => {
  it("drops source locations, C++ signatures and absolute paths; keeps what explains the failure", () => {
    const clean = sanitizeMessage(ZERO_BATCH);
    expect(clean).not.toMatch(/onnxruntime_src|reshape_helper|\.h:\d|ReshapeHelper::|\n/);
    expect(clean).toContain("The input tensor cannot be reshaped to the requested shape");
    expect(clean).toContain("Input shape:{0,120,1,1}");
    expect(sanitizeMessage(OTHER)).not.toMatch(/bfc_arena|\/src\/|AllocateRawInternal/);
    expect(sanitizeMessage(OTHER)).toContain("Failed to allocate memory");
    expect(sanitizeMessage("ENOENT: open '/var/lib/edgefleet/models/m/abc/model.onnx'")).toBe("ENOENT: open '<path>'");
    expect(sanitizeMessage("C:\\edgefleet\\data\\model.onnx missing")).toBe("<path> missing");
    expect(sanitizeMessage("\u001b[1;31mred\u001b[m text")).toBe("red text");
    // Ordinary messages are untouched (media types, shapes, ratios).
    for (const m of ["Unsupported Media Type: text/plain", 'input "x": dim 0 is 2, expected 1', "a/b 3/4"]) {
      expect(sanitizeMessage(m)).toBe(m);
    }
  });

  it("every API error body is sanitized (the log keeps the original)", () => {
    const r = apiErrorReply(new EdgeFleetError("INFERENCE_FAILED", ZERO_BATCH));
    expect(r.status).toBe(500);
    expect(r.body.error).not.toContain("/onnxruntime_src");
  });
});

describe("who is to blame for a failed run", () => {
  it("classifies onnxruntime's feed checks, shape failures and the rest", () => {
    expect(classifyRunFailure(BAD_DIMS)).toBe("feeds");
    expect(
      classifyRunFailure("Invalid rank for input: x Got: 3 Expected: 4 Please fix either the inputs or the model."),
    ).toBe("feeds");
    expect(classifyRunFailure("Unexpected input data type. Actual: (tensor(double)) , expected: (tensor(float))")).toBe(
      "feeds",
    );
    expect(classifyRunFailure(ZERO_BATCH)).toBe("shape");
    expect(classifyRunFailure(ZERO_WIDTH)).toBe("shape");
    expect(classifyRunFailure(OTHER)).toBe("other");
    const pad =
      "Non-zero status code returned while running If node. Name:'If_0' Status Message: Non-zero status code returned while running Pad node. Name:'If_0_then_branch__Inline_0__/stft/padding/Pad' Status Message: Pad reflect requires axis length >= 2 after slicing. Input shape:{1,1}";
    expect(classifyRunFailure(pad)).toBe("shape");
    expect(sanitizeMessage(pad)).toContain("Name:'If_0_then_branch__Inline_0__/stft/padding/Pad'");
    // The node's name is not the status: a node called "Reshape" failing on memory is not a shape error.
    expect(
      classifyRunFailure(
        "Non-zero status code returned while running Add node. Name:'invalid_input_shape' Status Message: bad alloc",
      ),
    ).toBe("other");
  });

  it("a shape failure is the caller's (400) on unproven shapes, the model's (500) on shapes it has served", () => {
    const raw = new EdgeFleetError("INFERENCE_FAILED", ZERO_BATCH);
    const caller = attributeRunFailure(raw, feeds, false);
    expect(caller.code).toBe("INVALID_TENSOR");
    expect(caller.message).toContain("x [0,3,48,8]");
    expect(caller.message).not.toContain("onnxruntime_src");
    const model = attributeRunFailure(raw, feeds, true);
    expect(model.code).toBe("INFERENCE_FAILED");
    expect(model.message).not.toContain("onnxruntime_src");
    expect(attributeRunFailure(new EdgeFleetError("INFERENCE_FAILED", BAD_DIMS), feeds, true).code).toBe(
      "INVALID_TENSOR",
    );
    expect(attributeRunFailure(new EdgeFleetError("INFERENCE_FAILED", OTHER), feeds, false).code).toBe(
      "INFERENCE_FAILED",
    );
    const crash = new EdgeFleetError("HOST_CRASHED", "model host exited");
    expect(attributeRunFailure(crash, feeds, false)).toBe(crash);
  });

  it("probation counts exactly the model's faults: never a 4xx, never a not-ready or storage fault", () => {
    const faults = ERROR_CODES.filter((c) => isModelFault(c));
    expect(faults.sort()).toEqual(["HOST_CRASHED", "INFERENCE_FAILED", "INTERNAL", "NON_FINITE_OUTPUT", "TIMEOUT"]);
    for (const c of ERROR_CODES) if (httpStatusFor(c) < 500) expect(isModelFault(c), c).toBe(false);
    for (const c of ["MODEL_NOT_READY", "DISK_FULL", "STORAGE_READ_ONLY", "STORAGE_FAILED"] as const) {
      expect(isModelFault(c)).toBe(false);
    }
    expect(isModelFault(undefined)).toBe(true);
  });

  it("remembers proven shapes per model, bounded", () => {
    const mem = createShapeMemory(2);
    const sig = (d: number) => shapeSignature({ x: { type: "float32", dims: [1, d], data: new Float32Array(d) } });
    mem.remember("m", sig(1));
    expect(mem.has("m", sig(1))).toBe(true);
    expect(mem.has("other", sig(1))).toBe(false);
    mem.remember("m", sig(2));
    mem.remember("m", sig(3));
    expect([1, 2, 3].map((d) => mem.has("m", sig(d)))).toEqual([false, true, true]);
    expect(sig(4)).toBe("x:float32[1,4]");
  });
});

describe("degenerate shapes and the metadata's words", () => {
  const spec = [
    { name: "x", datatype: "FP32" as const, shape: ["p2o.DynamicDimension.0", 3, 48, "p2o.DynamicDimension.1"] },
  ];
  const input = (shape: number[]) => ({ x: { datatype: "FP32" as const, shape, data: [] } });
  const err = (shape: number[]) => {
    try {
      validateInputs(spec, input(shape));
      return null;
    } catch (e) {
      return e as EdgeFleetError;
    }
  };

  it("a zero in a dynamic dim is INVALID_TENSOR (issue 20 §3: [1,3,48,0], [0,3,48,8])", () => {
    expect(err([1, 3, 48, 0])?.code).toBe("INVALID_TENSOR");
    expect(err([0, 3, 48, 8])?.code).toBe("INVALID_TENSOR");
    expect(err([1, 3, 48, 1])).toBeNull();
    // A spec that fixes a dim at 0 keeps it.
    expect(() => validateInputs([{ name: "x", datatype: "FP32", shape: [0, 2] }], input([0, 2]))).not.toThrow();
  });

  it("shape errors write dynamic dims as -1, like GET /v2/models/{m}", () => {
    expect(formatShape(spec[0]!.shape)).toBe("[-1,3,48,-1]");
    expect(err([1, 3, 47, 8])?.message).toContain("vs [-1,3,48,-1]");
    expect(err([1, 3, 47, 8])?.message).not.toContain("p2o");
  });
});

describe("parameters the agent does not implement are refused at every level", () => {
  const x = { name: "x", shape: [1, 3], datatype: "FP32", data: [1, 2, 3] };
  const codeOf = (body: unknown) => {
    try {
      decodeInferRequest(body, null);
      return "ok";
    } catch (e) {
      return (e as EdgeFleetError).code;
    }
  };

  it.each([
    ["request classification", { inputs: [x], parameters: { classification: 2 } }],
    // Sequences are implemented (issue 18), but a start or end needs the sequence it belongs to.
    ["request sequence_start without sequence_id", { inputs: [x], parameters: { sequence_start: true } }],
    ["request sequence_id of the wrong type", { inputs: [x], parameters: { sequence_id: true } }],
    ["request unknown", { inputs: [x], parameters: { priority: 1 } }],
    // Shared memory is implemented (v2-shm.ts) but these name no registered region or lack a region.
    [
      "input shared_memory_region of no registered region",
      { inputs: [{ ...x, data: undefined, parameters: { shared_memory_region: "r", shared_memory_byte_size: 12 } }] },
    ],
    [
      "input shared_memory_byte_size without a region",
      { inputs: [{ ...x, parameters: { shared_memory_byte_size: 12 } }] },
    ],
    ["output classification", { inputs: [x], outputs: [{ name: "y", parameters: { classification: 2 } }] }],
    [
      "output shared_memory_region without its byte size",
      { inputs: [x], outputs: [{ name: "y", parameters: { shared_memory_region: "r" } }] },
    ],
    ["binary_data not a boolean", { inputs: [x], outputs: [{ name: "y", parameters: { binary_data: "yes" } }] }],
    ["binary_data_output not a boolean", { inputs: [x], parameters: { binary_data_output: 1 } }],
  ])("%s → 400", (_what, body) => {
    expect(codeOf(body)).toBe("BAD_REQUEST");
  });

  it("what is implemented still passes", () => {
    expect(
      codeOf({
        inputs: [x],
        outputs: [{ name: "y", parameters: { binary_data: false } }],
        parameters: { binary_data_output: false, ab_key: "user-7" },
      }),
    ).toBe("ok");
    expect(() => checkParameters("request", undefined)).not.toThrow();
  });
});

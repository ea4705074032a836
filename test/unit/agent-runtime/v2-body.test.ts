import { describe, expect, it } from "vitest";
import { apiErrorReply } from "../../../agent/api/api-errors.js";
import { flattenData, parseInferBody } from "../../../agent/api/v2-body.js";
import { validateInputs, validateOutputNames, zerosFor } from "../../../agent/runtime/tensor-validation.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import type { TensorSpec } from "../../../shared/schemas/tensor.js";

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as EdgeFleetError).code;
  }
};

describe("v2 request body", () => {
  it("flattens nested row-major data and keeps flat data", () => {
    expect(flattenData([1, 2, 3], "x")).toEqual([1, 2, 3]);
    expect(
      flattenData(
        [
          [1, 2],
          [3, 4],
        ],
        "x",
      ),
    ).toEqual([1, 2, 3, 4]);
    expect(
      flattenData(
        [
          [[true], [false]],
          [[true], [true]],
        ],
        "x",
      ),
    ).toEqual([true, false, true, true]);
    expect(flattenData(["a", "b"], "x")).toEqual(["a", "b"]);
    expect(flattenData(7, "x")).toEqual([7]);
  });

  it("rejects null/object elements and ragged depth", () => {
    expect(codeOf(() => flattenData([1, null], "x"))).toBe("INVALID_TENSOR");
    expect(codeOf(() => flattenData([{ a: 1 }], "x"))).toBe("INVALID_TENSOR");
    expect(codeOf(() => flattenData([[1], 2], "x"))).toBe("INVALID_TENSOR");
    expect(codeOf(() => flattenData({ a: 1 }, "x"))).toBe("INVALID_TENSOR");
  });

  it("parses a full request into runtime inputs", () => {
    const parsed = parseInferBody({
      id: "r1",
      parameters: { priority: 1 },
      inputs: [
        {
          name: "a",
          shape: [2, 2],
          datatype: "FP32",
          data: [
            [1, 2],
            [3, 4],
          ],
          parameters: {},
        },
        { name: "b", shape: [], datatype: "INT64", data: [16000] },
        { name: "c", shape: [3], datatype: "UINT8", data: [1, 2, 3] },
        { name: "d", shape: [2], datatype: "BOOL", data: [true, false] },
        { name: "e", shape: [1], datatype: "INT32", data: [5] },
      ],
      outputs: [{ name: "y" }],
    });
    expect(parsed.id).toBe("r1");
    expect(parsed.outputs).toEqual(["y"]);
    expect(parsed.inputs.a).toEqual({ datatype: "FP32", shape: [2, 2], data: [1, 2, 3, 4] });
    expect(Object.keys(parsed.inputs)).toEqual(["a", "b", "c", "d", "e"]);
  });

  it("schema problems are BAD_REQUEST; duplicate inputs INVALID_TENSOR", () => {
    expect(codeOf(() => parseInferBody(null))).toBe("BAD_REQUEST");
    expect(codeOf(() => parseInferBody({ inputs: [] }))).toBe("BAD_REQUEST");
    expect(codeOf(() => parseInferBody({ inputs: [{ name: "a", shape: [-1], datatype: "FP32", data: [] }] }))).toBe(
      "BAD_REQUEST",
    );
    expect(codeOf(() => parseInferBody({ inputs: [{ name: "a", shape: [1], datatype: "float", data: [1] }] }))).toBe(
      "BAD_REQUEST",
    );
    const dup = { name: "a", shape: [1], datatype: "FP32", data: [1] };
    expect(codeOf(() => parseInferBody({ inputs: [dup, dup] }))).toBe("INVALID_TENSOR");
  });
});

describe("input validation against manifest specs", () => {
  const specs: TensorSpec[] = [
    { name: "x", datatype: "FP32", shape: [1, "seq"] },
    { name: "sr", datatype: "INT64", shape: [] },
  ];
  const good = {
    x: { datatype: "FP32" as const, shape: [1, 7], data: [] },
    sr: { datatype: "INT64" as const, shape: [], data: [1] },
  };

  it("accepts any size on dynamic dims", () => {
    expect(() => validateInputs(specs, good)).not.toThrow();
  });

  it("names the problem precisely", () => {
    const msg = (inputs: Record<string, unknown>) => {
      try {
        validateInputs(specs, inputs as typeof good);
        return "";
      } catch (e) {
        return (e as EdgeFleetError).message;
      }
    };
    expect(msg({ ...good, y: good.sr })).toContain('unknown input "y"');
    expect(msg({ x: good.x })).toContain('missing input "sr"');
    expect(msg({ ...good, x: { ...good.x, shape: [2, 7] } })).toContain("dim 0 is 2, expected 1");
    expect(msg({ ...good, x: { ...good.x, shape: [7] } })).toContain("rank 1");
    expect(msg({ ...good, sr: { ...good.sr, datatype: "INT32" } })).toContain("datatype INT32, expected INT64");
    expect(codeOf(() => validateOutputNames([{ name: "y", datatype: "FP32", shape: [] }], ["z"]))).toBe(
      "INVALID_TENSOR",
    );
    expect(validateOutputNames(specs, ["x", "x"])).toEqual(["x"]);
  });

  it("zerosFor fills dynamic dims with 1", () => {
    expect(zerosFor(specs[0]!)).toEqual({ datatype: "FP32", shape: [1, 1], data: [0] });
    expect(zerosFor({ name: "b", datatype: "BOOL", shape: [2] }).data).toEqual([false, false]);
  });
});

describe("api error mapping", () => {
  it("maps EdgeFleet codes and fastify errors to v2 error bodies", () => {
    expect(apiErrorReply(new EdgeFleetError("INVALID_TENSOR", "bad"))).toMatchObject({
      status: 400,
      body: { error: "bad", code: "INVALID_TENSOR" },
    });
    expect(
      apiErrorReply(Object.assign(new Error("too big"), { statusCode: 413, code: "FST_ERR_CTP_BODY_TOO_LARGE" }))
        .status,
    ).toBe(413);
    expect(apiErrorReply(Object.assign(new Error("bad json"), { statusCode: 400 })).body.code).toBe("BAD_REQUEST");
    expect(apiErrorReply(new Error("boom"))).toMatchObject({
      status: 500,
      serverFault: true,
      body: { code: "INTERNAL" },
    });
    expect(apiErrorReply(new EdgeFleetError("MODEL_NOT_READY", "x"))).toMatchObject({
      status: 503,
      serverFault: false,
    });
  });
});

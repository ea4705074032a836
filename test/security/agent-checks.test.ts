import { describe, expect, it } from "vitest";
import { planSocketDir, resolveGroup } from "../../agent/api/socket-dir.js";
import { checkExternalData, findExternalData } from "../../agent/bundle/onnx-external-data.js";
import { checkTlsUrl } from "../../agent/transport/tls.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { buildModel, floatTensor, graphAttr, node, valueInfo } from "../helpers/onnx-builder.js";

/** The pure checks behind issue 7's agent-side defences, case by case. */
const codeOf = (f: () => unknown): string | null => {
  try {
    f();
    return null;
  } catch (err) {
    return err instanceof EdgeFleetError ? err.code : `not an EdgeFleetError: ${String(err)}`;
  }
};

function modelWithExternal(location: string | null, nested: boolean): Uint8Array {
  const w = floatTensor("W", [1], Float32Array.of(1));
  w.dataLocation = 1;
  w.externalData = location === null ? [] : [{ key: "location", value: location }];
  const body = {
    name: "body",
    node: [node("Identity", ["W"], ["y"])],
    initializer: [w],
    output: [valueInfo("y", [1])],
  };
  if (!nested) {
    return buildModel({
      opset: 13,
      nodes: [node("Identity", ["W"], ["y"])],
      inputs: [],
      outputs: [valueInfo("y", [1])],
      initializers: [w],
    });
  }
  const ifNode = node("If", ["c"], ["y"], [graphAttr("then_branch", body), graphAttr("else_branch", body)]);
  return buildModel({ opset: 13, nodes: [ifNode], inputs: [valueInfo("c", [1], 9)], outputs: [valueInfo("y", [1])] });
}

describe("security: agent-side pure checks", () => {
  it("external data outside the bundle is refused, at the top level and inside subgraphs", () => {
    for (const nested of [false, true]) {
      for (const loc of ["../../../etc/passwd", "/etc/shadow", "weights.bin", null]) {
        expect(codeOf(() => checkExternalData(modelWithExternal(loc, nested), new Set(["model.onnx"])))).toBe(
          "BUNDLE_UNSAFE_ENTRY",
        );
      }
    }
    // A location that is a file of the signed bundle (hashed like the model) is allowed.
    expect(codeOf(() => checkExternalData(modelWithExternal("weights.bin", true), new Set(["weights.bin"])))).toBe(
      null,
    );
    expect(findExternalData(modelWithExternal("x", true)).length).toBeGreaterThan(0);
  });

  it("a model that is not a protobuf is refused (MODEL_LOAD_FAILED), never skipped", () => {
    expect(codeOf(() => checkExternalData(Buffer.from([0x0a, 0xff, 0xff, 0xff]), new Set()))).toBe("MODEL_LOAD_FAILED");
    expect(codeOf(() => checkExternalData(Buffer.from([0x0f]), new Set()))).toBe("MODEL_LOAD_FAILED");
  });

  it("a pinned CA on a plain mqtt:// URL is a config error", () => {
    expect(codeOf(() => checkTlsUrl("mqtt://fleet:1883", { caPath: "/ca.pem" }))).toBe("VALIDATION_FAILED");
    expect(codeOf(() => checkTlsUrl("mqtts://fleet:8883", { caPath: "/ca.pem" }))).toBe(null);
    expect(codeOf(() => checkTlsUrl("mqtt://fleet:1883", undefined))).toBe(null);
  });

  it("socket group: gid, numeric string or name from /etc/group; unknown names refused", () => {
    const etc = "root:x:0:\nedgefleet:x:991:app\n";
    expect(resolveGroup(5, etc)).toBe(5);
    expect(resolveGroup("42", etc)).toBe(42);
    expect(resolveGroup("edgefleet", etc)).toBe(991);
    expect(codeOf(() => resolveGroup("nope", etc))).toBe("VALIDATION_FAILED");
  });

  it("socket directory: never loosens the data dir, a sticky shared dir, a symlink or another user's dir", () => {
    const base = {
      dir: "/run/ef",
      dataDir: "/var/lib/ef",
      isDirectory: true,
      isSymlink: false,
      mode: 0o40755,
      ownerUid: 7,
      uid: 7,
    };
    expect(planSocketDir(base).kind).toBe("restrict");
    expect(planSocketDir({ ...base, dir: "/var/lib/ef" }).kind).toBe("leave");
    expect(planSocketDir({ ...base, mode: 0o41777 }).kind).toBe("leave");
    expect(planSocketDir({ ...base, isSymlink: true }).kind).toBe("leave");
    expect(planSocketDir({ ...base, ownerUid: 0 }).kind).toBe("leave");
  });
});

import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CreateRolloutRequestSchema } from "../../../fleet-server/rollout/definition.js";
import { ApiError } from "../../../scripts/fleetctl/api-client.js";
import { parseDefinitionFile } from "../../../scripts/fleetctl/rollout-commands.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import {
  formatFromPath,
  parseJsonText,
  parseYamlText,
  sniffFormat,
  YAML_LIMITS,
} from "../../../shared/structured-text.js";

/** Rollout definitions as YAML (shared/structured-text.ts): same document as JSON, untrusted input. */
const example = (ext: string) =>
  readFile(fileURLToPath(new URL(`../../../docs/examples/rollout-vad-canary.${ext}`, import.meta.url)), "utf8");

/** The thrown EdgeFleetError (fails the test when nothing or something else is thrown). */
function thrown(fn: () => unknown): EdgeFleetError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeFleetError);
    return err as EdgeFleetError;
  }
  throw new Error("expected an EdgeFleetError, nothing was thrown");
}

const MINIMAL = "model: vad\nversion: 2.0.0\ntarget:\n  deviceIds: [a]\n";

describe("YAML rollout definitions", () => {
  it("the example YAML file is the example JSON file, before and after the definition schema", async () => {
    const yaml = parseYamlText(await example("yaml"), "rollout-vad-canary.yaml");
    const json = parseJsonText(await example("json"), "rollout-vad-canary.json");
    expect(yaml).toEqual(json);
    const parsed = CreateRolloutRequestSchema.parse(yaml);
    expect(parsed).toEqual(CreateRolloutRequestSchema.parse(json));
    expect(parsed.stages?.[1]?.gates).toMatchObject({ minDevices: 10, maxP95LatencyRatio: 1.5 });
  });

  it("reads YAML 1.2 scalars: yes stays a string, 2.0.0 is a string, numbers are numbers", () => {
    expect(parseYamlText(`${MINIMAL}abWeight: 0.25\nflag: yes\n`, "f")).toEqual({
      model: "vad",
      version: "2.0.0",
      target: { deviceIds: ["a"] },
      abWeight: 0.25,
      flag: "yes",
    });
  });

  it("a syntax error is BAD_REQUEST with the line and column", () => {
    const src = "model: vad\nversion: 2.0.0\ntarget:\n  tags: {site: lab\nstages: []\n";
    const e = thrown(() => parseYamlText(src, "body"));
    expect(e.code).toBe("BAD_REQUEST");
    expect(e.message).toMatch(/^body: YAML syntax error at line 5, column 1: /);
    expect(e.details).toMatchObject({ format: "yaml", line: 5, column: 1, reason: "BAD_INDENT" });
  });

  it("a duplicate key is an error at its position, not last-one-wins", () => {
    const e = thrown(() => parseYamlText(`${MINIMAL}model: other\n`, "x.yaml"));
    expect(e.code).toBe("BAD_REQUEST");
    expect(e.details).toMatchObject({ line: 5, column: 1, reason: "DUPLICATE_KEY" });
  });

  it("more than one document is refused", () => {
    const e = thrown(() => parseYamlText(`${MINIMAL}---\n${MINIMAL}`, "body"));
    expect(e.details).toMatchObject({ reason: "MULTIPLE_DOCS" });
  });

  it.each([
    ["a custom tag", "!exec rm -rf /", 2],
    ["a YAML 1.1 !!binary", "!!binary aGVsbG8=", 2],
    ["a YAML 1.1 !!timestamp", "!!timestamp 2025-01-01", 2],
  ])("refuses %s instead of reading it as a plain value", (_name, value, line) => {
    const e = thrown(() => parseYamlText(`model: vad\nversion: ${value}\n`, "body"));
    expect(e.code).toBe("BAD_REQUEST");
    expect(e.message).toContain(`body: YAML not accepted at line ${line}, column 10: Unresolved tag`);
    expect(e.details).toMatchObject({ reason: "TAG_RESOLVE_FAILED" });
  });

  it("a billion-laughs alias bomb is refused before it expands", () => {
    const bomb = [
      "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]",
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]",
      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]",
      "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]",
      "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e]",
    ].join("\n");
    const e = thrown(() => parseYamlText(bomb, "body"));
    expect(e.code).toBe("BAD_REQUEST");
    expect(e.message).toMatch(/^body: YAML refused: /);
    expect(e.details).toMatchObject({ reason: "EXCESSIVE_ALIASES", maxAliasCount: YAML_LIMITS.maxAliasCount });
  });

  it("a wide anchor used within the alias limit is still capped by the values it expands to", () => {
    const wide = Array.from({ length: 10_000 }, (_, i) => `d${i}`).join(", ");
    const uses = Array.from({ length: 30 }, () => "*w").join(", ");
    const e = thrown(() => parseYamlText(`w: &w [${wide}]\nx: [${uses}]\n`, "body"));
    expect(e.details).toMatchObject({ reason: "EXCESSIVE_ALIASES", maxValues: YAML_LIMITS.maxValues });
  });

  it("a few aliases (shared gates) are fine and read like the expanded document", () => {
    const src = `${MINIMAL}stages:\n  - {percent: 10, gates: &g {minDevices: 1, maxFailedPercent: 5}}\n  - {percent: 100, gates: *g}\n`;
    const def = CreateRolloutRequestSchema.parse(parseYamlText(src, "body"));
    expect(def.stages?.map((s) => s.gates.maxFailedPercent)).toEqual([5, 5]);
  });

  it("merge keys are not merged: the schema refuses the literal << key with its path", () => {
    const src = `${MINIMAL}stages:\n  - percent: 100\n    <<: {soakSeconds: 5}\n`;
    const r = CreateRolloutRequestSchema.safeParse(parseYamlText(src, "body"));
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]).toMatchObject({ code: "unrecognized_keys", keys: ["<<"], path: ["stages", 0] });
  });

  it("after parsing, the definition schema gives the same issues with the same paths as JSON", () => {
    const yaml = `${MINIMAL}stages:\n  - percent: 50\n  - percent: 10\n`;
    const json = JSON.stringify({
      ...(parseYamlText(MINIMAL, "m") as object),
      stages: [{ percent: 50 }, { percent: 10 }],
    });
    const a = CreateRolloutRequestSchema.safeParse(parseYamlText(yaml, "body"));
    const b = CreateRolloutRequestSchema.safeParse(parseJsonText(json, "body"));
    expect(a.error?.issues).toEqual(b.error?.issues);
    expect(a.error?.issues[0]?.path).toEqual(["stages", 1, "percent"]);
  });

  it("refuses a source over the size limit", () => {
    const e = thrown(() => parseYamlText(`x: "${"a".repeat(YAML_LIMITS.maxSourceBytes)}"\n`, "body"));
    expect(e.code).toBe("PAYLOAD_TOO_LARGE");
  });
});

describe("definition files (fleetctl --file)", () => {
  it("chooses the format by extension, else by content", () => {
    expect(formatFromPath("a/b/r.yaml")).toBe("yaml");
    expect(formatFromPath("R.YML")).toBe("yaml");
    expect(formatFromPath("r.json")).toBe("json");
    expect(formatFromPath("rollout")).toBeNull();
    expect(formatFromPath("rollout.txt")).toBeNull();
    expect(sniffFormat('\uFEFF  {"model": "vad"}')).toBe("json");
    expect(sniffFormat("[1]")).toBe("json");
    expect(sniffFormat("# comment\nmodel: vad\n")).toBe("yaml");
    expect(parseDefinitionFile("rollout", MINIMAL)).toEqual(
      parseDefinitionFile("r.json", '{"model":"vad","version":"2.0.0","target":{"deviceIds":["a"]}}'),
    );
  });

  it("a YAML error in a .yaml file surfaces as fleetctl's `error CODE` with the file, line and column", () => {
    let err: unknown = null;
    try {
      parseDefinitionFile("prod.yaml", "model: vad\n  version: 2.0.0\n");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 0, code: "BAD_REQUEST", details: { line: 1, column: 8 } });
    expect((err as ApiError).message).toMatch(/^prod\.yaml: YAML syntax error at line 1, column 8: /);
  });

  it("a .json file is read as JSON (a YAML-only document is an error there), with the line when V8 gives it", () => {
    expect(() => parseDefinitionFile("r.json", MINIMAL)).toThrow(ApiError);
    let err: unknown = null;
    try {
      parseDefinitionFile("r.json", '{\n  "model": "vad",\n}');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: "BAD_REQUEST", details: { format: "json", line: 3, column: 1 } });
  });

  it("a document that is not a mapping is refused locally", () => {
    expect(() => parseDefinitionFile("r.yaml", "- model: vad\n")).toThrow(/a rollout definition is a mapping/);
    expect(() => parseDefinitionFile("r.yaml", "")).toThrow(/a rollout definition is a mapping/);
  });
});

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { apiErrorReply } from "../../../agent/api/api-errors.js";
import { EdgeFleetError, ERROR_CODES, toEdgeFleetError } from "../../../shared/errors.js";
import { fromThrown } from "../../../shared/fastify-errors.js";
import { httpStatusFor } from "../../../shared/http-status.js";

describe("error codes", () => {
  it("every code is documented in docs/errors.md", () => {
    const doc = readFileSync(new URL("../../../docs/errors.md", import.meta.url), "utf8");
    const missing = ERROR_CODES.filter((c) => !doc.includes(`\`${c}\``));
    expect(missing).toEqual([]);
  });

  it("every code's HTTP status is the one docs/errors.md states (issue 23: one table, both places)", () => {
    const doc = readFileSync(new URL("../../../docs/errors.md", import.meta.url), "utf8");
    const documented = new Map<string, number>();
    for (const m of doc.matchAll(/^\| `([A-Z_]+)` \| (\d{3})/gm)) documented.set(m[1]!, Number(m[2]));
    const differ = ERROR_CODES.filter((c) => documented.get(c) !== httpStatusFor(c)).map(
      (c) => `${c}: code ${httpStatusFor(c)}, docs ${documented.get(c)}`,
    );
    expect(differ).toEqual([]);
  });

  it("maps client errors to 4xx and unknown failures to 500", () => {
    expect(httpStatusFor("VALIDATION_FAILED")).toBe(400);
    expect(httpStatusFor("NOT_FOUND")).toBe(404);
    expect(httpStatusFor("PAYLOAD_TOO_LARGE")).toBe(413);
    expect(httpStatusFor("INTERNAL")).toBe(500);
  });

  it("wraps foreign errors as INTERNAL keeping the cause", () => {
    const cause = new RangeError("boom");
    const err = toEdgeFleetError(cause);
    expect(err).toBeInstanceOf(EdgeFleetError);
    expect(err.code).toBe("INTERNAL");
    expect(err.cause).toBe(cause);
    expect(err.toJSON()).toEqual({ code: "INTERNAL", message: "boom" });
  });

  it("one mapping of thrown errors for server and agent (issue 23): fastify's 4xx keep their class, bugs never leak", () => {
    const fastify = (statusCode: number, code: string, message: string) =>
      Object.assign(new Error(message), { statusCode, code });
    const cases: [unknown, string][] = [
      [new EdgeFleetError("INVALID_TENSOR", "bad"), "INVALID_TENSOR"],
      [fastify(413, "FST_ERR_CTP_BODY_TOO_LARGE", "too big"), "PAYLOAD_TOO_LARGE"],
      [fastify(404, "FST_ERR_NOT_FOUND", "no route"), "NOT_FOUND"],
      [fastify(415, "FST_ERR_CTP_INVALID_MEDIA_TYPE", "unsupported media type"), "BAD_REQUEST"],
      [new Error("ENOENT: open '/var/lib/edgefleet/secret'"), "INTERNAL"],
      ["a thrown string", "INTERNAL"],
    ];
    for (const [thrown, code] of cases) {
      expect(fromThrown(thrown).code).toBe(code);
      // The agent's socket answers with the same code (it mapped every 4xx to BAD_REQUEST before).
      expect(apiErrorReply(thrown).body.code).toBe(code);
    }
    const bug = new Error("ENOENT: open '/var/lib/edgefleet/secret'");
    expect(fromThrown(bug).message).toBe("internal error");
    expect(fromThrown(bug).cause).toBe(bug);
    expect(apiErrorReply(bug).body.error).not.toContain("/var/lib");
  });
});

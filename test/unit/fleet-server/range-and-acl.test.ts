import { describe, expect, it } from "vitest";
import { mayPublish, maySubscribe } from "../../../fleet-server/broker/acl.js";
import { topicMatches } from "../../../fleet-server/broker/transport.js";
import { parseRange } from "../../../fleet-server/bundles/range.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { createTopics } from "../../../shared/topics.js";

describe("parseRange", () => {
  it("ignores absent, foreign-unit, multi-range and reversed headers", () => {
    expect(parseRange(undefined, 100)).toBeNull();
    expect(parseRange("items=0-5", 100)).toBeNull();
    expect(parseRange("bytes=0-5,10-20", 100)).toBeNull();
    expect(parseRange("bytes=-", 100)).toBeNull();
    expect(parseRange("bytes=9-3", 100)).toBeNull();
  });
  it("parses closed, open-ended and suffix ranges, clamping the end", () => {
    expect(parseRange("bytes=0-99", 1000)).toEqual({ start: 0, end: 99 });
    expect(parseRange("bytes=900-", 1000)).toEqual({ start: 900, end: 999 });
    expect(parseRange("bytes=900-5000", 1000)).toEqual({ start: 900, end: 999 });
    expect(parseRange("bytes=-100", 1000)).toEqual({ start: 900, end: 999 });
    expect(parseRange("bytes=-5000", 1000)).toEqual({ start: 0, end: 999 });
    expect(parseRange("bytes=999-999", 1000)).toEqual({ start: 999, end: 999 });
  });
  it("throws RANGE_NOT_SATISFIABLE for ranges outside the file", () => {
    for (const h of ["bytes=1000-", "bytes=1000-1001", "bytes=-0"]) {
      try {
        parseRange(h, 1000);
        expect.unreachable(h);
      } catch (err) {
        expect(err).toBeInstanceOf(EdgeFleetError);
        expect((err as EdgeFleetError).code).toBe("RANGE_NOT_SATISFIABLE");
      }
    }
    expect(() => parseRange("bytes=0-", 0)).toThrow(EdgeFleetError);
  });
});

describe("broker ACL", () => {
  const t = createTopics();
  const a = { kind: "device", deviceId: "a" } as const;
  it("lets a device publish only on its own device→server topics", () => {
    expect(mayPublish(t, a, "fleet/v1/d/a/reported")).toBe(true);
    expect(mayPublish(t, a, "fleet/v1/d/a/chunks/req")).toBe(true);
    expect(mayPublish(t, a, "fleet/v1/d/a/desired")).toBe(false);
    expect(mayPublish(t, a, "fleet/v1/d/b/reported")).toBe(false);
    expect(mayPublish(t, a, "fleet/v1/trust/root")).toBe(false);
  });
  it("lets a device subscribe to its own server→device topics and the trust root, no wildcards", () => {
    expect(maySubscribe(t, a, "fleet/v1/d/a/desired")).toBe(true);
    expect(maySubscribe(t, a, "fleet/v1/d/a/chunks/res")).toBe(true);
    expect(maySubscribe(t, a, "fleet/v1/trust/root")).toBe(true);
    expect(maySubscribe(t, a, "fleet/v1/d/a/reported")).toBe(false);
    expect(maySubscribe(t, a, "fleet/v1/d/+/desired")).toBe(false);
    expect(maySubscribe(t, a, "fleet/v1/d/a/#")).toBe(false);
    expect(maySubscribe(t, a, "#")).toBe(false);
  });
  it("gives the server everything except $SYS", () => {
    expect(maySubscribe(t, { kind: "server" }, "fleet/v1/d/+/reported")).toBe(true);
    expect(maySubscribe(t, { kind: "server" }, "$SYS/#")).toBe(false);
  });
  it("matches topic filters", () => {
    expect(topicMatches("fleet/v1/d/+/reported", "fleet/v1/d/x/reported")).toBe(true);
    expect(topicMatches("fleet/v1/d/+/chunks/req", "fleet/v1/d/x/chunks/req")).toBe(true);
    expect(topicMatches("fleet/v1/d/+/reported", "fleet/v1/d/x/y/reported")).toBe(false);
    expect(topicMatches("fleet/#", "fleet/v1/d/x")).toBe(true);
  });
});

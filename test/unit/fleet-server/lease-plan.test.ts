import { describe, expect, it } from "vitest";
import { planLease, stillLeader } from "../../../fleet-server/cluster/lease-plan.js";
import { planRepublish, retainedSeq } from "../../../fleet-server/cluster/republish-plan.js";

const timing = { ttlMs: 6000, renewMs: 2000 };
const row = (holder: string, expiresAt: number) => ({ holder, holderUrl: `http://${holder}`, epoch: 3, expiresAt });

describe("planLease (issue 14, replicas)", () => {
  it("claims a missing, own or expired lease, and follows a live one held by another", () => {
    expect(planLease(null, "a", 100, timing)).toEqual({ kind: "claim", expiresAt: 6100 });
    expect(planLease(row("a", 200), "a", 100, timing)).toEqual({ kind: "claim", expiresAt: 6100 });
    expect(planLease(row("b", 100), "a", 100, timing)).toEqual({ kind: "claim", expiresAt: 6100 });
    expect(planLease(row("b", 101), "a", 100, timing)).toEqual({ kind: "follow", leader: row("b", 101) });
  });

  it("a holder steps down a renewal period before its lease expires, before anyone may take it", () => {
    expect(stillLeader(6000, 3999, timing)).toBe(true);
    expect(stillLeader(6000, 4000, timing)).toBe(false);
    // A TTL shorter than three renewals: the margin is a third of the TTL.
    expect(stillLeader(3000, 1999, { ttlMs: 3000, renewMs: 2000 })).toBe(true);
    expect(stillLeader(3000, 2000, { ttlMs: 3000, renewMs: 2000 })).toBe(false);
  });
});

describe("planRepublish (issue 14): only what the broker does not retain", () => {
  it("compares stored and retained seqs per device", () => {
    const stored = [
      { deviceId: "a", seq: 4 },
      { deviceId: "b", seq: 2 },
      { deviceId: "c", seq: 1 },
      { deviceId: "d", seq: 7 },
    ];
    const retained = new Map<string, number | null>([
      ["a", 4],
      ["b", 1],
      ["d", null],
    ]);
    expect(planRepublish(stored, retained)).toEqual(["b", "c", "d"]);
  });

  it("reads signed.seq from a retained envelope, null for anything else", () => {
    expect(retainedSeq(Buffer.from(JSON.stringify({ signed: { seq: 9 }, signatures: [] })))).toBe(9);
    expect(retainedSeq(Buffer.alloc(0))).toBeNull();
    expect(retainedSeq(Buffer.from("{not json"))).toBeNull();
    expect(retainedSeq(Buffer.from(JSON.stringify({ signed: { seq: "9" } })))).toBeNull();
    expect(retainedSeq(Buffer.from("null"))).toBeNull();
  });
});

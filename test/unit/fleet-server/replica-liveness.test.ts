import { describe, expect, it } from "vitest";
import { newReplicaId } from "../../../fleet-server/cluster/leadership.js";
import { isReplicaGone, parseReplicaId } from "../../../fleet-server/cluster/replica-liveness.js";

describe("replica liveness (issue 14)", () => {
  it("replica ids name their host and process", () => {
    const id = newReplicaId();
    expect(parseReplicaId(id)).toMatchObject({ pid: process.pid });
    expect(parseReplicaId("db-1.example-internal-4242-0a1b2c")).toEqual({ host: "db-1.example-internal", pid: 4242 });
    expect(parseReplicaId("no-pid-here")).toBeNull();
  });

  it("gone: no id (stored before replicas), no or an expired heartbeat, or a dead process on this host", () => {
    const base = { now: 1000, localHost: "h", processAlive: (pid: number) => pid === 7 };
    expect(isReplicaGone(null, { ...base, leaseExpiresAt: 5000 })).toBe(true);
    expect(isReplicaGone("h-7-aaaaaa", { ...base, leaseExpiresAt: null })).toBe(true);
    expect(isReplicaGone("h-7-aaaaaa", { ...base, leaseExpiresAt: 1000 })).toBe(true);
    expect(isReplicaGone("h-7-aaaaaa", { ...base, leaseExpiresAt: 1001 })).toBe(false);
    // Same host, process gone: no need to wait for the heartbeat to run out.
    expect(isReplicaGone("h-8-aaaaaa", { ...base, leaseExpiresAt: 5000 })).toBe(true);
    // Another host: only its heartbeat tells.
    expect(isReplicaGone("other-8-aaaaaa", { ...base, leaseExpiresAt: 5000 })).toBe(false);
  });
});

import { describe, expect, it } from "vitest";
import { createEventRing, diffSnapshot, type FeedEvent } from "../../../fleet-server/ui/change-feed.js";

const ev = (id: string): FeedEvent => ({ type: "device", data: { id, presence: "online", models: [] } });

describe("dashboard change feed (issue 15)", () => {
  it("diffSnapshot reports new and changed items only", () => {
    const a = diffSnapshot(new Map(), [
      { id: "d1", s: 1 },
      { id: "d2", s: 1 },
    ]);
    expect(a.changed.map((x) => x.id)).toEqual(["d1", "d2"]);
    const b = diffSnapshot(a.next, [
      { id: "d1", s: 1 },
      { id: "d2", s: 2 },
      { id: "d3", s: 1 },
    ]);
    expect(b.changed.map((x) => x.id)).toEqual(["d2", "d3"]);
    expect(diffSnapshot(b.next, [{ id: "d1", s: 1 }]).changed).toEqual([]);
  });

  it("the ring replays what a reconnecting client missed, and says reset when it no longer can", () => {
    const ring = createEventRing(3);
    for (const id of ["a", "b", "c", "d", "e"]) ring.push(ev(id));
    expect(ring.lastId()).toBe(5);
    expect(ring.after(0)).toEqual([]); // a first connection: from now on
    expect(ring.after(2)?.map((e) => e.id)).toEqual([3, 4, 5]);
    expect(ring.after(5)).toEqual([]);
    expect(ring.after(1)).toBeNull(); // event 2 fell out of the ring
    expect(ring.after(9)).toBeNull(); // an id from another server run
    ring.gap(); // nobody watched for a while
    expect(ring.after(4)).toBeNull();
    expect(ring.after(5)).toEqual([]);
  });
});

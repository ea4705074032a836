import { describe, expect, it } from "vitest";
import { defaultSeed, escapeRegex, namePattern, rotate } from "../../../scripts/ci/tests-alone-plan.js";

/** Issue 23: the CI step that runs tests alone selects exactly one test by name, in an order that rotates. */
describe("tests-alone plan", () => {
  const file = "/r/test/x.test.ts";
  const names = [
    "shadow > the caller always gets the serving version; agreement equals the known rate (75%)",
    "runtime > killed at 'swapping': restarts with exactly one version serving",
    "a > b > 3. a [side] candidate costs $5 + {x}*2? a|b \\ c / d ^e",
  ];

  it("a name's pattern matches its full name (suites joined by spaces) and nothing longer or shorter", () => {
    for (const name of names) {
      const re = new RegExp(namePattern({ name, file }));
      const full = name.split(" > ").join(" ");
      expect(re.test(full)).toBe(true);
      expect(re.test(`${full} again`)).toBe(false);
      expect(re.test(`outer ${full}`)).toBe(false);
      expect(re.test(full.slice(0, -1))).toBe(false);
    }
    // What running a name as it is did: the parentheses became a group, the name no longer matched.
    expect(new RegExp(names[0]!.split(" > ").join(" ")).test(names[0]!.split(" > ").join(" "))).toBe(false);
    expect(escapeRegex("a.b")).toBe("a\\.b");
  });

  it("rotation is a permutation, the same for a seed and different across seeds", () => {
    const items = Array.from({ length: 50 }, (_, i) => `test/f${i}.test.ts`);
    const a = rotate(items, "seed-a", (x) => x);
    expect([...a].sort()).toEqual([...items].sort());
    expect(rotate(items, "seed-a", (x) => x)).toEqual(a);
    expect(rotate(items, "seed-b", (x) => x)).not.toEqual(a);
    expect(defaultSeed("abc123", new Date("2026-12-02T15:00:00Z"))).toBe("abc123");
    expect(defaultSeed(null, new Date("2026-12-02T15:00:00Z"))).toBe("2026-12-02");
  });
});

import { createHash } from "node:crypto";

/**
 * The pure half of scripts/ci/tests-alone.ts (issue 23, "every test stands alone"): which tests to
 * run alone for a seed, and the `-t` pattern that selects exactly one of them. No I/O.
 */

/** A test as `vitest list --json` names it: suites and title joined by " > ". */
export interface ListedTest {
  name: string;
  file: string;
}

/** The order a seed gives `items`: by sha256(seed, key). Deterministic for a seed, different across seeds. */
export function rotate<T>(items: readonly T[], seed: string, key: (item: T) => string): T[] {
  const rank = (item: T) =>
    createHash("sha256")
      .update(`${seed}\0${key(item)}`)
      .digest("hex");
  return items
    .map((item) => ({ item, r: rank(item) }))
    .sort((a, b) => (a.r < b.r ? -1 : a.r > b.r ? 1 : 0))
    .map((x) => x.item);
}

/** `text` as a regular expression that matches only itself. */
export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/**
 * The `vitest -t` pattern for exactly `test`: vitest matches `-t` against the full name with suites
 * and title joined by spaces, as a regular expression, so a name like "rate (75%)" given as it is
 * matches nothing (the parentheses are a group) and the run silently skips everything.
 */
export function namePattern(test: ListedTest): string {
  return `^${escapeRegex(test.name.split(" > ").join(" "))}$`;
}

/** The seed when none is given: the commit (so a failure reproduces on it), else today's UTC date. */
export function defaultSeed(commit: string | null, now: Date): string {
  return commit ?? now.toISOString().slice(0, 10);
}

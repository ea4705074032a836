/**
 * A test fixture built once, on first use: cases run in order share it, and a case run alone
 * (`vitest -t`, scripts/ci/tests-alone.ts, issue 23) builds what it needs itself.
 */
export function memo<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | null = null;
  return () => (p ??= f());
}

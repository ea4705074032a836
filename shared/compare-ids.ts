/**
 * Orders ids by UTF-16 code units. Not `localeCompare`: its first call loads ICU's collation data,
 * about 2.5 MiB of the node binary's pages an idle agent then keeps resident (issue 16,
 * docs/benchmarks.md "Agent idle, fourth pass"). For the ids this sorts (profile ids,
 * `^[a-z0-9][a-z0-9-]*$`) code-unit order is the order ICU's root collation gives.
 */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

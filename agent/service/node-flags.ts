/**
 * V8 flags the installed agent runs with (issue 16, docs/benchmarks.md "Agent idle"). They are
 * command-line flags, so they live in the package's launcher (`bin/edge-agent`, written by
 * `npm run package:agent`) and in the unit `scripts/install-agent.sh` writes, both read from
 * `dist/agent/node-flags` which the build writes from this list: one source.
 *
 * - `--max-semi-space-size=1` (MiB): V8 grows the young generation up to 16 MiB per semi-space
 *   while the agent starts (zod schemas, fastify, the bundle's modules) and keeps it; an idle
 *   agent then holds ~20 MiB of mostly empty young space. Capped at 1 MiB the scavenges are more
 *   frequent and each is shorter; large tensors live outside the V8 heap and are not affected.
 * - `--optimize-for-size`: V8 favours memory over speed (smaller heap growth steps, less eager
 *   optimisation). The agent process routes requests; the model hosts, which do the numeric work
 *   and decode frames, do not get these flags (`hostExecArgv`).
 * - `--v8-pool-size=1`: one V8 platform worker thread instead of one per core. With a 20 MiB heap
 *   parallel GC saves nothing measurable, and each thread costs a stack and a malloc arena.
 */
export const AGENT_NODE_FLAGS = ["--max-semi-space-size=1", "--optimize-for-size", "--v8-pool-size=1"] as const;

/**
 * The model host's execArgv: the agent's own minus its memory flags. A host's heap is small
 * (tensors are external memory) and its JIT-compiled frame code is on every request's path.
 */
export function hostExecArgv(execArgv: readonly string[]): string[] {
  const flagNames = new Set(AGENT_NODE_FLAGS.map((f) => f.split("=")[0]));
  return execArgv.filter((a) => !flagNames.has(a.split("=")[0]));
}

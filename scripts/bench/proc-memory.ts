import { readFile } from "node:fs/promises";
import { basename } from "node:path";

/**
 * Where a process's resident memory lives (issue 16 "measure what the agent's memory is made of"),
 * from `/proc/<pid>/smaps`: every mapping's `Rss` summed by what backs it. Anonymous memory is
 * V8's heaps plus malloc arenas (better-sqlite3's page caches, onnxruntime's tensors, libuv);
 * file-backed memory is code shared with every other process that maps the same file (the node
 * binary, libc), so it is listed apart: it is what RSS counts but not what the agent costs.
 */
export interface MemoryBreakdown {
  /** KiB per group, largest first. */
  groups: { group: string; rssKiB: number }[];
  totalKiB: number;
}

function groupOf(name: string): string {
  if (name === "" || name === "[anon]" || name.startsWith("[anon:")) return "anonymous (V8 heaps, malloc arenas)";
  if (name === "[heap]") return "[heap] (brk malloc)";
  if (name === "[stack]") return "[stack]";
  if (name.startsWith("[")) return "kernel-mapped ([vdso], [vvar])";
  if (name.endsWith(".node")) return `addon ${basename(name)}`;
  if (name.includes("libonnxruntime")) return "libonnxruntime (shared code)";
  if (/\/node$|\/nodejs$/.test(name)) return "node binary (shared code)";
  if (name.startsWith("/dev/shm") || name.includes("memfd:")) return "shared memory regions";
  if (/\.so(\.\d+)*$/.test(name)) return "system libraries (shared code)";
  if (name.endsWith(".db") || name.endsWith("-shm") || name.endsWith("-wal")) return "SQLite files (mmap)";
  return "other files";
}

/** Parses smaps text (exported for its unit test); the header line's 6th field names the mapping. */
export function parseSmaps(text: string): MemoryBreakdown {
  const byGroup = new Map<string, number>();
  let current = "";
  for (const line of text.split("\n")) {
    const header = /^[0-9a-f]+-[0-9a-f]+\s+\S+\s+\S+\s+\S+\s+\d+\s*(.*)$/.exec(line);
    if (header) {
      current = groupOf((header[1] ?? "").trim());
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) byGroup.set(current, (byGroup.get(current) ?? 0) + Number(rss[1]));
  }
  const groups = [...byGroup.entries()]
    .map(([group, rssKiB]) => ({ group, rssKiB }))
    .filter((g) => g.rssKiB > 0)
    .sort((a, b) => b.rssKiB - a.rssKiB);
  return { groups, totalKiB: groups.reduce((s, g) => s + g.rssKiB, 0) };
}

export async function memoryBreakdown(pid: number): Promise<MemoryBreakdown> {
  return parseSmaps(await readFile(`/proc/${pid}/smaps`, "utf8"));
}

/** `nodejs_*` heap gauges of a prom-client exposition, in MiB (V8's own view of the anonymous memory). */
export function v8HeapFromMetrics(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  const mib = (v: string) => Math.round((Number(v) / 1048576) * 10) / 10;
  for (const line of text.split("\n")) {
    const m = /^(nodejs_heap_size_total_bytes|nodejs_heap_size_used_bytes|nodejs_external_memory_bytes) (\S+)/.exec(
      line,
    );
    if (m) out[m[1]!.replace(/^nodejs_|_bytes$/g, "")] = mib(m[2]!);
    const space = /^nodejs_heap_space_size_used_bytes\{space="(\w+)"\} (\S+)/.exec(line);
    if (space && Number(space[2]) > 512 * 1024) out[`used ${space[1]}`] = mib(space[2]!);
  }
  return out;
}

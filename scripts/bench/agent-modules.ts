import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { memoryBreakdown } from "./proc-memory.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));

/**
 * The dependencies the agent process loads (the externals and the largest packages in its bundle,
 * by esbuild's metafile), each imported alone into a fresh node. Table of issue 16: "which
 * dependencies the agent process loads and what each costs".
 */
const MODULES = [
  "fastify",
  "mqtt",
  "zod",
  "better-sqlite3",
  "pino",
  "prom-client",
  "tar",
  "node-cron",
  "tweetnacl",
  "semver",
  "commander",
  "yaml",
] as const;

/**
 * Built-ins whose first use maps ICU data out of the node binary, resident for the life of the
 * process (issue 16, fourth pass: node-cron formatted the clock with Intl on every tick, profile
 * ids were sorted with localeCompare). The idle agent must use neither.
 */
const ICU_PROBES = {
  "Intl.DateTimeFormat (ICU date data)": "new Intl.DateTimeFormat('en-US', { weekday: 'short' }).format(0);",
  "String#localeCompare (ICU collation)": "'a'.localeCompare('b');",
} as const;

interface Cost {
  rssMiB: number;
  /** Anonymous memory and brk heap: what this process owns (V8 heaps, malloc). */
  privateMiB: number;
  /** Pages of the node binary and shared libraries: shared with every node process on the device. */
  sharedCodeMiB: number;
}

const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;

/** Runs `code` in a fresh node, waits for it to settle, then reads its smaps. */
async function costOf(code: string, args: readonly string[] = []): Promise<Cost> {
  const proc = spawn(process.execPath, [...args, "--input-type=module", "-e", code], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.once("data", () => resolve());
      proc.once("exit", (c) => reject(new Error(`module probe exited ${c}: ${code}`)));
    });
    // Give lazy initialisers and the first GC a moment, as the idle bench does.
    await new Promise((r) => setTimeout(r, 1500));
    const b = await memoryBreakdown(proc.pid!);
    const sum = (pred: (g: string) => boolean) =>
      b.groups.filter((g) => pred(g.group)).reduce((s, g) => s + g.rssKiB, 0);
    return {
      rssMiB: mib(b.totalKiB),
      privateMiB: mib(sum((g) => g.startsWith("anonymous") || g.startsWith("[heap]"))),
      sharedCodeMiB: mib(sum((g) => g.includes("shared code"))),
    };
  } finally {
    proc.kill("SIGKILL");
  }
}

const minus = (a: Cost, b: Cost): Cost => ({
  rssMiB: Math.round((a.rssMiB - b.rssMiB) * 10) / 10,
  privateMiB: Math.round((a.privateMiB - b.privateMiB) * 10) / 10,
  sharedCodeMiB: Math.round((a.sharedCodeMiB - b.sharedCodeMiB) * 10) / 10,
});

/** Scenario `agent-modules`: each dependency's cost over a bare node, and the whole bundle's. */
export async function benchAgentModules(): Promise<Record<string, unknown>> {
  const keepAlive = "setInterval(() => {}, 1000); console.log('ready');";
  const bare = await costOf(keepAlive);
  const modules: Record<string, Cost> = {};
  for (const m of MODULES) {
    modules[m] = minus(await costOf(`await import(${JSON.stringify(m)}); ${keepAlive}`), bare);
  }
  const icu: Record<string, Cost> = {};
  for (const [what, code] of Object.entries(ICU_PROBES)) icu[what] = minus(await costOf(`${code} ${keepAlive}`), bare);
  return {
    scenario: "agent-modules",
    anchor: { what: "bare node (setInterval)", ...bare },
    figure: { what: "each module imported alone, cost over the anchor", modules },
    icu: { what: "first use of an ICU-backed built-in, cost over the anchor", ...icu },
  };
}

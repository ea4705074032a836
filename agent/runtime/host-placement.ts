import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { setPriority } from "node:os";
import { promisify } from "node:util";
import type { HostSessionOptions } from "./session-options.js";

/**
 * Where and how a background model host runs (a shadow candidate, issue 8: "never affects the caller").
 *
 * Measured on the 2-vCPU reference machine, one caller request every 4 ms, each arm against an A/A
 * arm in shuffled blocks (docs/benchmarks.md, shadow):
 * - ORT's thread pools spin after every run by default; a shadow host then burned 3–4.5 ms of CPU
 *   per 0.02 ms sample. One thread, spinning off: 0.2–0.3 ms.
 * - Waking any other process between two caller requests slowed the next ones (an unrelated process
 *   doing 0.25 ms of work: 1.01–1.04×); running the sample on the serving host did not (0.996×).
 *   A shadow host free to use every CPU: 1.05–1.12×. Confined to one CPU at nice 10: 1.03–1.05×.
 *   Confined and SCHED_IDLE: 0.997–1.03×, not distinguishable from the A/A arm. The same number of
 *   runs at nice 10 (sampleRate 0.25) still cost 1.07×: it is the scheduling class, not fewer runs.
 * One CPU makes more than one intra-op thread pointless (they would only time-slice it).
 */
export interface HostPlacement {
  /** Scheduling priority (nice), applied to the host's pid; undefined = inherited. */
  nice?: number;
  /** CPU ids every thread of the host may run on; undefined = inherited (all). */
  cpus?: number[];
  /**
   * SCHED_IDLE for every thread: runs only when nothing else wants the CPU, and the kernel's wake-up
   * placement treats a CPU running only such tasks as idle, so callers' processes are not steered
   * away from it. A process may lower itself to it without privileges (never raised back here: a
   * background host is never promoted in place).
   */
  idle?: boolean;
}

/** The nice value of a background host: below the serving hosts, so callers' work always runs first. */
export const BACKGROUND_NICE = 10;

/**
 * Pure: the placement of a background host given the CPUs the agent may use. The last one is chosen
 * (the kernel and most init systems favour low-numbered CPUs for their own work and IRQs). With a
 * single CPU there is nothing to confine to.
 */
export function backgroundPlacement(allowedCpus: readonly number[]): HostPlacement {
  const last = allowedCpus.length >= 2 ? allowedCpus[allowedCpus.length - 1] : undefined;
  // nice stays as the fallback where SCHED_IDLE cannot be set.
  return last === undefined
    ? { nice: BACKGROUND_NICE, idle: true }
    : { nice: BACKGROUND_NICE, idle: true, cpus: [last] };
}

/** Pure: the profile's session options for a background host: one intra-op thread, no spin-waiting. */
export function backgroundSessionOptions(options: HostSessionOptions): HostSessionOptions {
  return {
    ...options,
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    extra: { ...options.extra, "session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0" },
  };
}

/**
 * Pure: parses a Linux CPU list (`0-3,6,8-9`, as in /proc/self/status `Cpus_allowed_list`) into
 * sorted ids. Throws on anything else: a mis-read list must not pin a host to a CPU that is not ours.
 */
export function parseCpuList(text: string): number[] {
  const ids = new Set<number>();
  for (const part of text.trim().split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`not a CPU list: ${JSON.stringify(text)}`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from || to - from > 4096) throw new Error(`not a CPU list: ${JSON.stringify(text)}`);
    for (let c = from; c <= to; c++) ids.add(c);
  }
  return [...ids].sort((a, b) => a - b);
}

/** The CPUs this process may run on (its affinity, which respects cgroup cpusets), or [] when unknown. */
export async function allowedCpus(): Promise<number[]> {
  try {
    const status = await readFile("/proc/self/status", "utf8");
    const line = /^Cpus_allowed_list:\s*(.+)$/m.exec(status);
    return line?.[1] ? parseCpuList(line[1]) : [];
  } catch {
    return []; // not Linux, or /proc not mounted: no pinning
  }
}

const execFileAsync = promisify(execFile);

/** The thread ids of `pid` (Linux), or just `pid` where /proc cannot tell. */
async function threadIds(pid: number): Promise<number[]> {
  try {
    return (await readdir(`/proc/${pid}/task`)).map(Number).filter((t) => Number.isInteger(t));
  } catch {
    return [pid];
  }
}

/**
 * Applies `placement` to the process `pid` and all its threads. Best effort: each part that the OS
 * refuses (raising priority needs privileges; `chrt`/`taskset` (util-linux) may be missing) is
 * returned as a failure and the host runs unconfined, which is slower for callers but never wrong.
 */
export async function applyPlacement(pid: number, placement: HostPlacement): Promise<string[]> {
  const failures: string[] = [];
  if (placement.nice !== undefined) {
    // On Linux a nice value belongs to a thread: setpriority(pid) changes only the main thread, and
    // ORT's, libuv's and V8's threads that already exist keep theirs. (Threads started later inherit
    // it from the thread that starts them.) So every thread is set.
    for (const tid of await threadIds(pid)) {
      try {
        setPriority(tid, placement.nice);
      } catch (err) {
        // A thread that ended in between is gone, not a failure.
        if ((err as { info?: { code?: string } }).info?.code !== "ESRCH") {
          failures.push(`nice ${placement.nice} (thread ${tid}): ${(err as Error).message}`);
        }
      }
    }
  }
  if (placement.idle) {
    try {
      await execFileAsync("chrt", ["-a", "-i", "-p", "0", String(pid)], { timeout: 5000 });
    } catch (err) {
      failures.push(`SCHED_IDLE: ${(err as Error).message}`);
    }
  }
  if (placement.cpus !== undefined && placement.cpus.length > 0) {
    try {
      // -a: every existing thread; threads started later inherit the mask of the thread that starts them.
      await execFileAsync("taskset", ["-a", "-p", "-c", placement.cpus.join(","), String(pid)], { timeout: 5000 });
    } catch (err) {
      failures.push(`cpus ${placement.cpus.join(",")}: ${(err as Error).message}`);
    }
  }
  return failures;
}

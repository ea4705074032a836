import { type ChildProcess, fork } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import type { Readable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError, type ErrorJson, isErrorCode } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { SequenceSpec } from "../../shared/schemas/sequence.js";
import type { RawTensor } from "../../shared/tensors.js";
import { hostExecArgv } from "../service/node-flags.js";
import { readFrames, writeFrame } from "./host-channel.js";
import { decodeTensors, encodeFrame, type Frame } from "./host-frames.js";
import { parseRunReply, type RunReplyHeader } from "./host-headers.js";
import {
  type HostMetadata,
  type HostRequest,
  type HostResponse,
  type HostResult,
  monoMs,
  type RunTiming,
  type SequenceStates,
} from "./host-protocol.js";
import type { SequenceStep } from "./host-sequences.js";
import { createSideDir, removeSideDir, sidePayloadsIn } from "./host-side-payloads.js";
import type { HostSessionOptions } from "./session-options.js";

export interface ModelHostDeps {
  log: Logger;
  clock: Clock;
  /** Host entry file; defaults to model-host-main next to this module, with this module's extension. */
  entry?: string;
  /** Node flags for the host; defaults to ours, plus the tsx loader when the entry is TypeScript. */
  execArgv?: string[];
  /** How long session creation may take before the host is killed (default 60 s). */
  loadTimeoutMs?: number;
  /** How long a stopping host may take to exit before SIGKILL (default 5 s). */
  stopTimeoutMs?: number;
  /**
   * tmpfs directory under which each host pair gets its side-payload directory (host-side-payloads.ts);
   * default /dev/shm; null sends every payload on the socket.
   */
  sidePayloadRoot?: string | null;
}

export interface SpawnOptions {
  modelPath: string;
  /** Expected SHA-256 of the model file; the host loads from the bytes it verified (see host-protocol.ts). */
  modelSha256?: string;
  options: HostSessionOptions;
  /** For logs: "model@version". */
  label: string;
  /** The manifest's implicit state (issue 18): the host keeps live sequences' state. */
  sequence?: SequenceSpec;
}

export interface HostExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when we asked it to stop; false means it crashed or was killed from outside. */
  expected: boolean;
}

export interface HostRun {
  outputs: Record<string, RawTensor>;
  /** Time spent in `session.run` inside the host (ms). */
  computeMs: number;
  /** Host process CPU attributed to this run (ms, all threads; model-host-main.ts `cpuSince`). Issue 22. */
  cpuMs: number | null;
  /** Stage timestamps of this run (benchmarks' breakdown; a few clock reads per run). */
  timing: RunTiming;
}

export interface ModelHost {
  readonly pid: number;
  readonly metadata: HostMetadata;
  alive(): boolean;
  /** `seq`: the run is a frame of a sequence; the host adds its state and keeps the new one (issue 18). */
  run(feeds: Record<string, RawTensor>, outputs?: string[], seq?: SequenceStep): Promise<HostRun>;
  rss(): Promise<number | null>;
  /** Forgets these sequences' state in the host (expiry, restart); resolves with how many it had. */
  dropSequences(ids: string[]): Promise<number>;
  exportSequences(ids: string[]): Promise<SequenceStates>;
  importSequences(states: SequenceStates): Promise<number>;
  /** Graceful stop (releases the session), SIGKILL after the stop timeout. Idempotent. */
  stop(): Promise<void>;
  /** Resolves once when the process has exited, for any reason. */
  readonly exited: Promise<HostExit>;
}

/** `Omit` distributed over the union, so each request variant keeps its own fields. */
type RequestBody = HostRequest extends infer T ? (T extends HostRequest ? Omit<T, "id"> : never) : never;

interface Pending {
  /** A control answer (HostResult) or a run reply (HostRun). */
  resolve(r: HostResult | HostRun): void;
  reject(e: EdgeFleetError): void;
}

function defaultEntry(): string {
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  return fileURLToPath(new URL(`./model-host-main${ext}`, import.meta.url));
}

/**
 * Forked children inherit our execArgv; under `node --import tsx` that already loads tsx. Under other
 * TypeScript runners (vitest) it does not, so add tsx's loader, resolved from this package rather than
 * from the working directory. The agent's own memory flags stay with the agent (node-flags.ts).
 */
function defaultExecArgv(entry: string): string[] {
  const argv = hostExecArgv(process.execArgv);
  if (entry.endsWith(".ts") && !argv.some((a) => a.includes("tsx"))) {
    const loader = createRequire(import.meta.url).resolve("tsx");
    argv.push("--import", pathToFileURL(loader).href);
  }
  return argv;
}

function fromJson(e: ErrorJson): EdgeFleetError {
  return new EdgeFleetError(isErrorCode(e.code) ? e.code : "INTERNAL", e.message, { details: e.details });
}

/**
 * Forks a host, creates the session in it and resolves once it is ready.
 *
 * Invariants: every request id is in `pending` until its response arrives or the child exits;
 * on exit every pending call is rejected with HOST_CRASHED (or MODEL_NOT_READY after a requested stop),
 * and later calls fail fast — nothing waits on a dead process.
 */
export async function spawnModelHost(deps: ModelHostDeps, spawn: SpawnOptions): Promise<ModelHost> {
  const log = deps.log.child({ host: spawn.label });
  const entry = deps.entry ?? defaultEntry();
  // stdin and fd 4: the bulk channel (host-protocol.ts), socketpairs private to the two processes.
  // Large payloads travel through files in a directory private to this pair (host-side-payloads.ts).
  const sideDir = deps.sidePayloadRoot === null ? null : createSideDir(deps.sidePayloadRoot);
  const side = sideDir ? sidePayloadsIn(sideDir, "a") : null;
  const child: ChildProcess = fork(entry, [], {
    serialization: "advanced",
    execArgv: deps.execArgv ?? defaultExecArgv(entry),
    stdio: ["pipe", "inherit", "inherit", "ipc", "pipe"],
    env: sideDir ? { ...process.env, EDGEFLEET_HOST_SIDE_DIR: sideDir } : process.env,
  });
  const bulkOut = child.stdin!;
  const bulkIn = child.stdio[4] as Readable;
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let stopping = false;
  let exitInfo: HostExit | null = null;

  const exited = new Promise<HostExit>((resolve) => {
    child.once("exit", (code, signal) => {
      exitInfo = { code, signal, expected: stopping };
      // Payloads in flight when it died are nobody's now.
      removeSideDir(sideDir);
      const err = stopping
        ? new EdgeFleetError("MODEL_NOT_READY", `model host ${spawn.label} was stopped`)
        : new EdgeFleetError(
            "HOST_CRASHED",
            `model host ${spawn.label} (pid ${child.pid}) exited (code ${code}, signal ${signal})`,
          );
      if (!stopping) log.error({ code, signal, pending: pending.size }, "model host exited unexpectedly");
      for (const p of pending.values()) p.reject(err);
      pending.clear();
      resolve(exitInfo);
    });
  });
  // A spawn failure (ENOENT, EAGAIN) is followed by no "exit" in some cases; make it one.
  child.once("error", (err) => {
    log.error({ err }, "model host process error");
    if (exitInfo === null && child.exitCode === null) child.kill("SIGKILL");
  });
  child.on("message", (msg: HostResponse) => {
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(fromJson(msg.error));
  });

  // The bulk channel. Its failure (a bad frame, a broken socket) leaves the host unusable: kill it, so
  // every pending call is rejected with HOST_CRASHED by the exit handler and the supervisor restarts it.
  const condemn = (why: string, err: unknown) => {
    if (exitInfo !== null) return;
    log.error({ err, pending: pending.size }, `model host ${why}; killing it`);
    child.kill("SIGKILL");
  };
  bulkOut.on("error", (err) => condemn("bulk channel write failed", err));
  bulkIn.on("error", (err) => condemn("bulk channel read failed", err));
  readFrames(
    bulkIn,
    (frame) => onRunReply(frame, monoMs()),
    (err) => condemn("sent a bad frame", err),
    { side },
  );

  function onRunReply(frame: Frame, answered: number): void {
    let h: RunReplyHeader;
    try {
      h = parseRunReply(frame.header);
    } catch (err) {
      condemn("sent a bad run reply header", err);
      return;
    }
    const p = pending.get(h.id);
    if (!p) return;
    pending.delete(h.id);
    if (!h.ok) {
      p.reject(fromJson(h.error as ErrorJson));
      return;
    }
    let outputs: Record<string, RawTensor>;
    try {
      outputs = decodeTensors(h.tensors, frame.payload);
    } catch (err) {
      p.reject(new EdgeFleetError("HOST_CRASHED", `model host ${spawn.label} sent unreadable outputs`));
      condemn("sent unreadable outputs", err);
      return;
    }
    // Built field by field: a spread of the parsed header object is a generic clone on every reply.
    const t = h.timing;
    const timing = {
      received: t.received,
      ortStart: t.ortStart,
      ortEnd: t.ortEnd,
      replying: t.replying,
      sent: 0,
      answered,
    };
    p.resolve({ outputs, computeMs: h.computeMs, cpuMs: h.cpuMs, timing });
  }

  function deadError(): EdgeFleetError | null {
    if (exitInfo === null && child.connected) return null;
    return stopping
      ? new EdgeFleetError("MODEL_NOT_READY", `model host ${spawn.label} was stopped`)
      : new EdgeFleetError("HOST_CRASHED", `model host ${spawn.label} is not running`);
  }

  /** One run over the bulk channel: the feeds' own memory is written, the outputs are views of the reply. */
  function runCall(feeds: Record<string, RawTensor>, outputs?: string[], seq?: SequenceStep): Promise<HostRun> {
    const dead = deadError();
    if (dead) return Promise.reject(dead);
    const id = nextId++;
    const sent = monoMs();
    return new Promise<HostRun>((resolve, reject) => {
      pending.set(id, {
        resolve: (r) => {
          const run = r as HostRun;
          run.timing.sent = sent;
          resolve(run);
        },
        reject,
      });
      try {
        const header: Record<string, unknown> = outputs ? { id, outputs } : { id };
        if (seq) header.seq = seq;
        writeFrame(bulkOut, encodeFrame(header, feeds), side);
      } catch (err) {
        // Nothing was written (encoding failed before the first byte): this request alone fails.
        pending.delete(id);
        reject(new EdgeFleetError("INTERNAL", `could not encode a run for ${spawn.label}: ${String(err)}`));
      }
    });
  }

  function call(req: RequestBody): Promise<HostResult> {
    const dead = deadError();
    if (dead) return Promise.reject(dead);
    const id = nextId++;
    return new Promise<HostResult>((resolve, reject) => {
      pending.set(id, { resolve: (r) => resolve(r as HostResult), reject });
      child.send({ ...req, id } as HostRequest, (err) => {
        if (err && pending.delete(id))
          reject(new EdgeFleetError("HOST_CRASHED", `send to model host failed: ${err.message}`));
      });
    });
  }

  let stopPromise: Promise<void> | null = null;
  function stop(): Promise<void> {
    stopPromise ??= (async () => {
      stopping = exitInfo === null ? true : stopping;
      if (exitInfo !== null) return;
      const timeout = deps.clock.setTimeout(() => child.kill("SIGKILL"), deps.stopTimeoutMs ?? 5_000);
      call({ type: "stop" }).catch(() => child.kill("SIGKILL"));
      await exited;
      timeout.cancel();
    })();
    return stopPromise;
  }

  const loadTimeoutMs = deps.loadTimeoutMs ?? 60_000;
  let metadata: HostMetadata;
  let timedOut = false;
  const timer = deps.clock.setTimeout(() => {
    timedOut = true;
    log.error({ loadTimeoutMs }, "model load timed out; killing host");
    child.kill("SIGKILL");
  }, loadTimeoutMs);
  try {
    const res = await call({
      type: "load",
      modelPath: spawn.modelPath,
      options: spawn.options,
      ...(spawn.modelSha256 !== undefined ? { modelSha256: spawn.modelSha256 } : {}),
      ...(spawn.sequence ? { sequence: spawn.sequence } : {}),
    });
    if (res.type !== "load") throw new EdgeFleetError("INTERNAL", "unexpected host response to load");
    metadata = res.metadata;
  } catch (err) {
    const e = err instanceof EdgeFleetError ? err : new EdgeFleetError("MODEL_LOAD_FAILED", String(err));
    await stop();
    if (timedOut)
      throw new EdgeFleetError("MODEL_LOAD_FAILED", `loading ${spawn.label} timed out after ${loadTimeoutMs} ms`);
    if (e.code === "MODEL_LOAD_FAILED") throw e;
    // The host's own hash check of model.onnx says the device's copy changed, not that the model is
    // bad: keep the code, so the updater re-makes the files instead of condemning the bundle
    // (damaged-candidate.ts, self-heal.ts) — MODEL_LOAD_FAILED would mark it bad for ever.
    if (e.code === "BUNDLE_HASH_MISMATCH") throw new EdgeFleetError(e.code, `loading ${spawn.label}: ${e.message}`);
    throw new EdgeFleetError("MODEL_LOAD_FAILED", `loading ${spawn.label}: ${e.message}`, {
      details: { cause: e.code },
    });
  } finally {
    timer.cancel();
  }
  log.debug({ pid: child.pid }, "model host ready");

  return {
    pid: child.pid ?? -1,
    metadata,
    exited,
    // The IPC channel closes before "exit" fires: a disconnected child is as good as dead.
    alive: () => exitInfo === null && !stopping && child.connected,
    run: runCall,
    async rss() {
      // Read by the agent from /proc where there is one: no IPC round trip, so the host is not woken
      // (a wake-up of another process costs callers, docs/benchmarks.md "Shadow"), and a background
      // host in the idle scheduling class answers at once even on a busy device.
      const fromProc = await procRss(child.pid);
      if (fromProc !== null) return fromProc;
      try {
        const res = await call({ type: "rss" });
        return res.type === "rss" ? res.rss : null;
      } catch {
        return null;
      }
    },
    async dropSequences(ids) {
      const res = await call({ type: "sequence-drop", ids });
      return res.type === "sequence-drop" ? res.dropped : 0;
    },
    async exportSequences(ids) {
      const res = await call({ type: "sequence-export", ids });
      return res.type === "sequence-export" ? res.states : {};
    },
    async importSequences(states) {
      const res = await call({ type: "sequence-import", states });
      return res.type === "sequence-import" ? res.imported : 0;
    },
    stop,
  };
}

/** VmRSS of `pid` in bytes from /proc (Linux), or null where that cannot be read. */
async function procRss(pid: number | undefined): Promise<number | null> {
  if (pid === undefined) return null;
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, "utf8"));
    return m?.[1] ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

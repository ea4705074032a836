import { open, readFile, rename, stat, truncate, writeFile } from "node:fs/promises";
import type { Clock } from "../../shared/clock.js";
import { toEdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { jsonToRaw, type RawTensor, rawToJson } from "../../shared/tensors.js";
import type { SequenceStore } from "../runtime/sequence-store.js";

/**
 * A stream job (issue 18): frames appended to a local NDJSON file (`{ "inputs": { name: JsonTensor } }`
 * per line, e.g. written by a sensor daemon) are run as one sequence of `model`, results appended to
 * an output NDJSON file (`{ "frame", "model_version", "outputs" }` or `{ "frame", "error", "code" }`).
 *
 * Resumable: after each batch the job records, atomically (temporary file + rename), how far it read
 * the input and how long the output was. At a start it cuts the output back to that length (a batch
 * written but not recorded is redone, never doubled) and reads on from there. The sequence state does
 * not survive a restart (it lived in a model host): the first frame after a start starts a new
 * sequence. A lost sequence (host crash) also starts a new one at the next frame.
 */
export interface StreamJobDefinition {
  name: string;
  model: string;
  version?: string;
  input: { path: string };
  output: { path: string };
}

export interface StreamJobDeps {
  sequences: SequenceStore;
  clock: Clock;
  log: Logger;
  /** How often the input file is checked for new lines (default 200 ms). */
  pollMs?: number;
}

interface Progress {
  inputOffset: number;
  outputBytes: number;
  frames: number;
}

export interface StreamJob {
  /** Frames done so far (across restarts). */
  frames(): number;
  /** Settles when the job ends: fulfilled after `stop()`, rejected when it died of a fault (supervised: stream-jobs.ts). */
  done: Promise<void>;
  /** Stops after the batch under way; its progress is recorded. */
  stop(): Promise<void>;
}

const progressPath = (def: StreamJobDefinition) => `${def.output.path}.progress.json`;

async function readProgress(def: StreamJobDefinition): Promise<Progress> {
  try {
    return JSON.parse(await readFile(progressPath(def), "utf8")) as Progress;
  } catch {
    return { inputOffset: 0, outputBytes: 0, frames: 0 };
  }
}

async function sizeOf(p: string): Promise<number | null> {
  try {
    return (await stat(p)).size;
  } catch {
    return null;
  }
}

export async function startStreamJob(def: StreamJobDefinition, deps: StreamJobDeps): Promise<StreamJob> {
  const log = deps.log.child({ streamJob: def.name });
  const pollMs = deps.pollMs ?? 200;
  const id = `job:${def.name}`;
  const progress = await readProgress(def);
  // A batch appended after the last recorded progress is cut off and done again.
  if (((await sizeOf(def.output.path)) ?? 0) > progress.outputBytes)
    await truncate(def.output.path, progress.outputBytes);
  let startNext = true;
  let stopped = false;
  let wake: (() => void) | null = null;

  const frame = async (line: string, n: number): Promise<string> => {
    try {
      const parsed = JSON.parse(line) as { inputs?: Record<string, JsonTensor> };
      const inputs: Record<string, RawTensor> = {};
      for (const [name, t] of Object.entries(parsed.inputs ?? {})) inputs[name] = jsonToRaw(name, t);
      const res = await deps.sequences.step({
        model: def.model,
        ...(def.version ? { version: def.version } : {}),
        id,
        start: startNext,
        end: false,
        inputs,
      });
      startNext = false;
      const outputs: Record<string, unknown> = {};
      for (const [name, t] of Object.entries(res.outputs)) outputs[name] = rawToJson(t).data;
      return `${JSON.stringify({ frame: n, model_version: res.version, outputs })}\n`;
    } catch (err) {
      const e = toEdgeFleetError(err, "BAD_REQUEST");
      // No state to go on with: the next frame starts a new sequence.
      if (e.code === "SEQUENCE_LOST" || e.code === "SEQUENCE_UNKNOWN") startNext = true;
      return `${JSON.stringify({ frame: n, error: e.message, code: e.code })}\n`;
    }
  };

  /** Runs the complete lines appended since the last batch; false when there were none. */
  const batch = async (): Promise<boolean> => {
    const size = await sizeOf(def.input.path);
    if (size === null || size <= progress.inputOffset) return false;
    const fh = await open(def.input.path, "r");
    let bytes: Buffer;
    try {
      bytes = Buffer.alloc(Math.min(size - progress.inputOffset, 4 * 1024 * 1024));
      await fh.read(bytes, 0, bytes.length, progress.inputOffset);
    } finally {
      await fh.close();
    }
    const end = bytes.lastIndexOf(10);
    if (end < 0) return false; // a line still being written
    const out: string[] = [];
    for (const line of bytes.subarray(0, end).toString("utf8").split("\n")) {
      if (line.trim().length === 0) continue;
      out.push(await frame(line, progress.frames + out.length));
    }
    const text = out.join("");
    const fo = await open(def.output.path, "a");
    try {
      await fo.write(text);
      await fo.sync();
    } finally {
      await fo.close();
    }
    progress.inputOffset += end + 1;
    progress.outputBytes += Buffer.byteLength(text);
    progress.frames += out.length;
    const tmp = `${progressPath(def)}.tmp`;
    await writeFile(tmp, JSON.stringify(progress));
    await rename(tmp, progressPath(def));
    return true;
  };

  const loop = (async () => {
    while (!stopped) {
      let more = false;
      try {
        more = await batch();
      } catch (err) {
        // Supervised: an I/O fault is logged and retried after a pause, never the end of the job.
        log.warn({ err }, "stream job batch failed; retrying");
      }
      if (!more && !stopped) {
        await new Promise<void>((resolve) => {
          const t = deps.clock.setTimeout(resolve, pollMs);
          wake = () => {
            t.cancel();
            resolve();
          };
        });
        wake = null;
      }
    }
    await deps.sequences.end(def.model, id);
  })();

  return {
    frames: () => progress.frames,
    done: loop,
    async stop() {
      stopped = true;
      (wake as (() => void) | null)?.();
      await loop;
    },
  };
}

import { SocketClient } from "../../agent/client/socket-client.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { jsonToRaw, type RawTensor } from "../../shared/tensors.js";
import { timePaced, timeSequential } from "./stats.js";

/**
 * A local app in its own process, for benchmarks where the caller must not share the agent's
 * event loop or CPU accounting (architecture.md §9: figures as a device's apps would see them). Forked by
 * `runInClientProcess`; each message asks for `n` sequential infers and is answered with their
 * latencies in milliseconds.
 */
interface Job {
  socketPath: string;
  model: string;
  inputs: Record<string, JsonTensor>;
  n: number;
  warmup: number;
  /** Set: one request every `intervalMs` (timePaced); unset: back to back. */
  intervalMs?: number;
  /** Send with the binary tensor extension instead of JSON. */
  binary?: boolean;
}

process.on("message", (job: Job) => {
  const client = new SocketClient(job.socketPath);
  const raw: Record<string, RawTensor> = {};
  if (job.binary) for (const [n, t] of Object.entries(job.inputs)) raw[n] = jsonToRaw(n, t);
  const call = job.binary ? () => client.inferBinary(job.model, raw) : () => client.inferTensors(job.model, job.inputs);
  const timed =
    job.intervalMs === undefined
      ? timeSequential(job.n, job.warmup, call)
      : timePaced(job.n, job.warmup, job.intervalMs, call);
  timed.then(
    (latencies) => process.send?.({ latencies }),
    (err: unknown) => process.send?.({ error: String(err) }),
  );
});

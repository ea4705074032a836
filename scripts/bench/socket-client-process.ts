import { SocketClient } from "../../agent/client/socket-client.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { timeSequential } from "./stats.js";

/**
 * A local app in its own process, for benchmarks where the caller must not share the agent's
 * event loop or CPU accounting (DESIGN §9: figures as a device's apps would see them). Forked by
 * `runInClientProcess`; each message asks for `n` sequential infers and is answered with their
 * latencies in milliseconds.
 */
interface Job {
  socketPath: string;
  model: string;
  inputs: Record<string, JsonTensor>;
  n: number;
  warmup: number;
}

process.on("message", (job: Job) => {
  const client = new SocketClient(job.socketPath);
  timeSequential(job.n, job.warmup, () => client.inferTensors(job.model, job.inputs)).then(
    (latencies) => process.send?.({ latencies }),
    (err: unknown) => process.send?.({ error: String(err) }),
  );
});

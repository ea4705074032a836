import { toEdgeFleetError } from "../../shared/errors.js";
import type { RawTensor } from "../../shared/tensors.js";
import type { RawInferResult } from "../runtime/runtime.js";
import { type BatchingPolicy, concatRows, planBatch, splitRows } from "./batch-assembly.js";

interface Queued {
  inputs: Record<string, RawTensor>;
  rows: number;
  enqueuedUs: number;
  resolve(r: RawInferResult): void;
  reject(e: unknown): void;
}

export interface DynamicBatcher {
  submit(inputs: Record<string, RawTensor>): Promise<RawInferResult>;
  /** Rejects nothing: queued requests are dispatched without further waiting. */
  close(): void;
}

const nowUs = () => performance.now() * 1000;

/**
 * One queue of compatible requests (same model, version selector, input signature). At most
 * `maxInFlight` batches run at once (default 1: the host runs one session at a time anyway), so
 * requests arriving while a batch runs gather into the next one — that is where the throughput
 * comes from under concurrent load. Decisions are `planBatch`'s; this file only keeps the timer.
 * Invariant: every queued request is settled exactly once (resolved from its slice of the batch or
 * rejected with the batch's error).
 */
export function createDynamicBatcher(opts: {
  policy: BatchingPolicy;
  run(inputs: Record<string, RawTensor>): Promise<RawInferResult>;
  maxInFlight?: number;
}): DynamicBatcher {
  const queue: Queued[] = [];
  const maxInFlight = opts.maxInFlight ?? 1;
  let inFlight = 0;
  let timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  let closed = false;

  const clearTimer = () => {
    if (timer) {
      clearTimeout(timer as NodeJS.Timeout);
      clearImmediate(timer as NodeJS.Immediate);
      timer = null;
    }
  };

  const pump = (): void => {
    clearTimer();
    while (inFlight < maxInFlight && queue.length > 0) {
      const d = planBatch(
        queue.map((q) => q.rows),
        closed ? Number.POSITIVE_INFINITY : nowUs() - queue[0]!.enqueuedUs,
        opts.policy,
      );
      if (d.kind === "idle") return;
      if (d.kind === "wait") {
        // Node timers have 1 ms resolution; shorter waits yield one turn of the event loop instead.
        timer = d.micros < 1000 ? setImmediate(pump) : setTimeout(pump, Math.floor(d.micros / 1000));
        return;
      }
      dispatch(queue.splice(0, d.count));
    }
  };

  const dispatch = (batch: Queued[]): void => {
    inFlight++;
    const names = Object.keys(batch[0]!.inputs);
    const inputs: Record<string, RawTensor> = {};
    try {
      for (const n of names) inputs[n] = concatRows(batch.map((q) => q.inputs[n]!));
    } catch (err) {
      inFlight--;
      for (const q of batch) q.reject(toEdgeFleetError(err));
      return;
    }
    void opts
      .run(inputs)
      .then(
        (res) => {
          const rows = batch.map((q) => q.rows);
          const parts: Record<string, RawTensor[]> = {};
          for (const [n, t] of Object.entries(res.outputs)) parts[n] = splitRows(t, rows);
          batch.forEach((q, i) => {
            const outputs: Record<string, RawTensor> = {};
            for (const n of Object.keys(parts)) outputs[n] = parts[n]![i]!;
            q.resolve({ ...res, outputs });
          });
        },
        (err) => {
          for (const q of batch) q.reject(err);
        },
      )
      .catch((err) => {
        for (const q of batch) q.reject(err);
      })
      .finally(() => {
        inFlight--;
        pump();
      });
  };

  return {
    submit(inputs) {
      return new Promise<RawInferResult>((resolve, reject) => {
        const first = Object.values(inputs)[0];
        queue.push({ inputs, rows: first?.dims[0] ?? 1, enqueuedUs: nowUs(), resolve, reject });
        pump();
      });
    },
    close() {
      closed = true;
      pump();
    },
  };
}

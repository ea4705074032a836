import * as ort from "onnxruntime-node";
import { sessionOptionsFromProfile } from "../../agent/runtime/session-options.js";
import { matmulModel, startServingFixture, throughput } from "./serving-fixture.js";
import { ratio } from "./stats.js";

/**
 * Scenario "serving-dynamic-batching" (issue 8): `workers` concurrent socket clients (binary
 * extension) each sending [1, K] requests to y = x·W (K = 256), with dynamic batching off (the
 * anchor, same run) and on (maxBatchSize 32, maxQueueDelayMicros 500). In-process onnxruntime-node
 * one request at a time is printed too for scale.
 */
export async function benchServingBatching(workers = 32, perWorker = 150): Promise<Record<string, unknown>> {
  const K = 256;
  const fx = await startServingFixture();
  try {
    const bytes = matmulModel(K);
    const x = Float32Array.from({ length: K }, (_, i) => Math.sin(i));
    const session = await ort.InferenceSession.create(bytes, sessionOptionsFromProfile(fx.profile));
    const feeds = { x: new ort.Tensor("float32", x, [1, K]) };
    const inProcess = await throughput(1, workers * perWorker, () => session.run(feeds));
    await session.release();

    await fx.install("mm", "1.0.0", bytes, [1, K]);
    const send = () => fx.client.inferBinary("mm", { x: { type: "float32", data: x, dims: [1, K] } });
    await throughput(workers, 10, send); // warm-up
    const unbatched = await throughput(workers, perWorker, send);
    fx.serving.configure("mm", {
      dynamicBatching: { maxBatchSize: 32, preferredBatchSizes: [], maxQueueDelayMicros: 500 },
    });
    await throughput(workers, 10, send);
    const batched = await throughput(workers, perWorker, send);
    return {
      scenario: "serving-dynamic-batching",
      model: `MatMul [n,${K}]x[${K},${K}] FP32`,
      concurrency: workers,
      requests: workers * perWorker,
      anchor: { what: "socket, no dynamic batching", reqPerSec: unbatched },
      figure: { what: "socket, dynamic batching (max 32, 500 µs)", reqPerSec: batched },
      inProcessSequential: { what: "in-process session.run, one at a time", reqPerSec: inProcess },
      ratio: ratio(batched, unbatched),
    };
  } finally {
    await fx.close();
  }
}

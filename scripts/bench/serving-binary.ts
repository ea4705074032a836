import * as ort from "onnxruntime-node";
import { inferShared, registerRegion, SharedMemoryObject } from "../../agent/client/shm-client.js";
import { sessionOptionsFromProfile } from "../../agent/runtime/session-options.js";
import { reluModel, startServingFixture } from "./serving-fixture.js";
import { createStageRecorder, stageMedians } from "./stages.js";
import { ratio, summarize, timeSequential } from "./stats.js";

/**
 * Scenario "serving-binary-vs-json" (issue 8): one 1×3×640×640 FP32 tensor (4.9 MB) through a
 * nearly free model (Relu), so the transport is what is measured:
 *   anchor — onnxruntime-node in-process session.run, same session options;
 *   binary — Unix socket, v2 binary tensor extension (input and output as raw bytes);
 *   json   — Unix socket, v2 JSON tensors (1.2 M numbers each way);
 *   shm    — Unix socket, shared-memory extension: input and output in /dev/shm regions (issue 13).
 */
export async function benchServingBinary(n = 40): Promise<Record<string, unknown>> {
  const rec = createStageRecorder();
  const fx = await startServingFixture({ onInferStages: rec.onHttp });
  fx.runtime.observe(rec.onRecord);
  try {
    const dims = [1, 3, 640, 640];
    const size = dims.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: size }, (_, i) => ((i % 255) - 127) / 127);
    const bytes = reluModel();

    const session = await ort.InferenceSession.create(bytes, sessionOptionsFromProfile(fx.profile));
    const feeds = { x: new ort.Tensor("float32", data, dims) };
    const anchor = summarize(await timeSequential(n, 5, () => session.run(feeds)));
    await session.release();

    await fx.install("relu640", "1.0.0", bytes, dims);
    const binaryTraces = await rec.time(n, 5, () =>
      fx.client.inferBinary("relu640", { x: { type: "float32", data, dims } }),
    );
    const binary = summarize(binaryTraces.map((t) => t.client1 - t.client0));
    // The same binary requests with every agent ↔ host payload on the socket (the transport before
    // side payloads, host-side-payloads.ts): the before/after of that change in one run.
    const socketRec = createStageRecorder();
    const fxSocket = await startServingFixture({ onInferStages: socketRec.onHttp, sidePayloads: false });
    fxSocket.runtime.observe(socketRec.onRecord);
    let socketTraces: Awaited<ReturnType<typeof rec.time>>;
    try {
      await fxSocket.install("relu640", "1.0.0", bytes, dims);
      socketTraces = await socketRec.time(n, 5, () =>
        fxSocket.client.inferBinary("relu640", { x: { type: "float32", data, dims } }),
      );
    } finally {
      await fxSocket.close();
    }
    const binarySocket = summarize(socketTraces.map((t) => t.client1 - t.client0));
    const tensorBytes = data.byteLength;
    const shmIn = SharedMemoryObject.create(`ef-bench-in-${process.pid}`, tensorBytes);
    const shmOut = SharedMemoryObject.create(`ef-bench-out-${process.pid}`, tensorBytes);
    let shmTraces: Awaited<ReturnType<typeof rec.time>>;
    try {
      shmIn.write(0, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      await registerRegion(fx.client, "in", { key: shmIn.key, byteSize: tensorBytes });
      await registerRegion(fx.client, "out", { key: shmOut.key, byteSize: tensorBytes });
      shmTraces = await rec.time(n, 5, () =>
        inferShared(
          fx.client,
          "relu640",
          [{ name: "x", datatype: "FP32", shape: dims, region: "in", byteSize: tensorBytes }],
          [{ name: "y", region: "out", byteSize: tensorBytes }],
        ),
      );
    } finally {
      shmIn.destroy();
      shmOut.destroy();
    }
    const shm = summarize(shmTraces.map((t) => t.client1 - t.client0));
    const asArray = Array.from(data);
    const json = summarize(
      await timeSequential(Math.max(5, Math.floor(n / 4)), 2, () =>
        fx.client.inferTensors("relu640", { x: { datatype: "FP32", shape: dims, data: asArray } }),
      ),
    );
    const perSec = (ms: number) => Math.round((1000 / ms) * 10) / 10;
    return {
      scenario: "serving-binary-vs-json",
      tensor: "FP32 1x3x640x640 (4.9 MB) in and out, Relu",
      anchor: { what: "in-process onnxruntime-node session.run", ...anchor, inferPerSec: perSec(anchor.meanMs) },
      figure: {
        what: "Unix socket v2 binary extension",
        ...binary,
        inferPerSec: perSec(binary.meanMs),
        stagesP50Ms: stageMedians(binaryTraces),
      },
      binaryHostPayloadsOnSocket: {
        what: "binary extension, agent ↔ host payloads on the socket (no side files)",
        ...binarySocket,
        inferPerSec: perSec(binarySocket.meanMs),
        stagesP50Ms: stageMedians(socketTraces),
      },
      shm: {
        what: "Unix socket, shared-memory regions for input and output",
        ...shm,
        inferPerSec: perSec(shm.meanMs),
        stagesP50Ms: stageMedians(shmTraces),
      },
      json: { what: "Unix socket v2 JSON tensors", ...json, inferPerSec: perSec(json.meanMs) },
      ratioBinaryToAnchorP50: ratio(binary.p50Ms, anchor.p50Ms),
      ratioBinarySocketToAnchorP50: ratio(binarySocket.p50Ms, anchor.p50Ms),
      ratioShmToAnchorP50: ratio(shm.p50Ms, anchor.p50Ms),
      ratioJsonToAnchorP50: ratio(json.p50Ms, anchor.p50Ms),
      speedupBinaryOverJson: ratio(json.p50Ms, binary.p50Ms),
    };
  } finally {
    await fx.close();
  }
}

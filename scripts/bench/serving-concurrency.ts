import { readFile } from "node:fs/promises";
import * as ort from "onnxruntime-node";
import { sessionOptionsFromProfile } from "../../agent/runtime/session-options.js";
import { jsonToRaw } from "../../shared/tensors.js";
import { type ClientProcess, startClientProcess } from "./client-process.js";
import { realModels } from "./quantize.js";
import { startServingFixture } from "./serving-fixture.js";
import { createStageRecorder, stageMedians } from "./stages.js";
import { ratio } from "./stats.js";

/**
 * Scenario "serving-concurrency" (issue 13): throughput of a small real conv model (PP-OCR v2
 * direction classifier, input 1×3×48×192 FP32) at 1, 4 and 16 concurrent clients.
 *   anchor — the same number of in-process onnxruntime-node sessions (same session options), each
 *            run back to back by its own loop in one process;
 *   figure — the same number of local apps, each its own process, sending back to back over the
 *            agent's socket with the binary tensor extension, to one agent serving the model.
 * Throughput is completed inferences per second of wall time for the whole block.
 */
export async function benchServingConcurrency(
  perClient = Number(process.env.BENCH_CONC_N ?? 100),
  levels: number[] = [1, 4, 16],
): Promise<Record<string, unknown>> {
  const model = realModels().find((m) => m.id === "ppocr-cls")!;
  const bytes = await readFile(model.path);
  const input = model.samples[0]!.inputs;
  const raw = jsonToRaw("x", input.x!);
  const dims = [...raw.dims];
  const rec = createStageRecorder();
  const fx = await startServingFixture({ onInferStages: rec.onHttp });
  fx.runtime.observe(rec.onRecord);
  const clients: ClientProcess[] = [];
  try {
    const options = sessionOptionsFromProfile(fx.profile);
    await fx.install("cls", "1.0.0", new Uint8Array(bytes), dims, { outputs: ["softmax_0.tmp_0"] });
    // Where one request's time goes (one client in this process, requests one at a time): the
    // breakdown the throughput rows below cannot show.
    const traces = await rec.time(Math.max(50, perClient), 10, () =>
      fx.client.inferBinary("cls", { x: { type: "float32", data: raw.data as Float32Array, dims } }),
    );
    const stagesP50Ms = stageMedians(traces);
    const rows: Record<string, unknown>[] = [];
    for (const c of levels) {
      const sessions = await Promise.all(Array.from({ length: c }, () => ort.InferenceSession.create(bytes, options)));
      const feeds = { x: new ort.Tensor("float32", raw.data as Float32Array, dims) };
      for (const s of sessions) await s.run(feeds);
      const a0 = performance.now();
      await Promise.all(
        sessions.map(async (s) => {
          for (let i = 0; i < perClient; i++) await s.run(feeds);
        }),
      );
      const anchorPerSec = (c * perClient * 1000) / (performance.now() - a0);
      await Promise.all(sessions.map((s) => s.release()));

      while (clients.length < c) clients.push(startClientProcess());
      const job = { socketPath: fx.socketPath, model: "cls", inputs: input, warmup: 5, binary: true };
      await Promise.all(clients.slice(0, c).map((p) => p.run({ ...job, n: 1 })));
      const f0 = performance.now();
      const latencies = await Promise.all(clients.slice(0, c).map((p) => p.run({ ...job, n: perClient, warmup: 0 })));
      const figurePerSec = (c * perClient * 1000) / (performance.now() - f0);
      const all = latencies.flat().sort((x, y) => x - y);
      rows.push({
        clients: c,
        anchorInferPerSec: Math.round(anchorPerSec),
        socketInferPerSec: Math.round(figurePerSec),
        socketP50Ms: Math.round(all[Math.floor(all.length / 2)]! * 100) / 100,
        ratioSocketToAnchor: ratio(figurePerSec, anchorPerSec),
      });
    }
    return {
      scenario: "serving-concurrency",
      model: "PP-OCR v2 cls (1x3x48x192 FP32), binary extension",
      anchor: "in-process onnxruntime-node sessions, one per client",
      figure: "app processes over the agent socket, one agent and one model host",
      perClient,
      stagesP50Ms,
      rows,
    };
  } finally {
    for (const p of clients) p.close();
    await fx.close();
  }
}

import { InferenceSession, Tensor } from "onnxruntime-node";
import { createFeedback } from "../../agent/feedback/feedback-routes.js";
import { systemClock } from "../../shared/clock.js";
import { jsonToRaw } from "../../shared/tensors.js";
import { sileroModelPath, sileroSamples } from "../demo/silero.js";
import { percentile } from "./stats.js";

/**
 * Scenario `feedback-window` (issue 22): what remembering a prediction for later feedback costs
 * per request (the infer route's `recordPrediction`: output summary + a bounded Map insert, only
 * for requests that carry an `id`), with the window full (10,000 entries, so every insert also
 * evicts), beside the anchor: one in-process Silero VAD `session.run`, the cheapest model we serve,
 * in the same run.
 */
export async function benchFeedbackWindow(n = 200_000): Promise<Record<string, unknown>> {
  const fb = createFeedback({ clock: systemClock });
  const classifier = { y: { type: "float32" as const, dims: [1, 4], data: new Float32Array([0.1, 0.7, 0.15, 0.05]) } };
  const regression = { y: { type: "float32" as const, dims: [1, 1], data: new Float32Array([0.42]) } };
  const time = (outputs: typeof classifier, prefix: string) => {
    // Fill the window first so inserts evict, as on a busy device.
    for (let i = 0; i < 10_000; i++)
      fb.recordPrediction({ model: "m", id: `${prefix}w${i}`, version: "1.0.0", outputs });
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fb.recordPrediction({ model: "m", id: `${prefix}${i}`, version: "1.0.0", outputs });
    return ((performance.now() - t0) * 1000) / n;
  };
  const classUs = [time(classifier, "c"), time(classifier, "c2"), time(classifier, "c3")];
  const valuesUs = [time(regression, "r"), time(regression, "r2"), time(regression, "r3")];

  const session = await InferenceSession.create(sileroModelPath(), { intraOpNumThreads: 1 });
  const feeds: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(sileroSamples()[0]!.inputs)) {
    const raw = jsonToRaw(name, t);
    feeds[name] = new Tensor(raw.type, raw.data as Tensor.DataType, raw.dims);
  }
  const runs: number[] = [];
  for (let i = 0; i < 300; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    runs.push(performance.now() - t0);
  }
  await session.release();
  const anchorMs = percentile(
    runs.slice(50).sort((a, b) => a - b),
    50,
  );
  const r = (x: number) => Math.round(x * 1000) / 1000;
  const worstUs = Math.max(...classUs, ...valuesUs);
  return {
    scenario: "feedback-window",
    anchor: { what: "Silero VAD v5 session.run in-process, p50 ms", ms: r(anchorMs) },
    figure: {
      what: "recordPrediction per request, window full (10,000), µs (3 rounds)",
      classifierUs: classUs.map(r),
      valuesUs: valuesUs.map(r),
    },
    ratio: r(worstUs / 1000 / anchorMs),
  };
}

import { cpus, totalmem } from "node:os";
import { benchAgentIdle } from "./agent-idle.js";
import { benchAgentModules } from "./agent-modules.js";
import { benchBundleDelivery } from "./bundle-delivery.js";
import { benchBundleDelta } from "./bundle-delta.js";
import { benchBundleSizes } from "./bundle-sizes.js";
import { benchEventLoop } from "./event-loop.js";
import { benchFanout } from "./fanout.js";
import { benchFeedbackWindow } from "./feedback-window.js";
import { benchFleetScale } from "./fleet-scale.js";
import { benchInferOverhead } from "./infer-overhead.js";
import { benchQuantize } from "./quantize.js";
import { benchQuantizeStatic } from "./quantize-static.js";
import { benchServingBatching } from "./serving-batching.js";
import { benchServingBinary } from "./serving-binary.js";
import { benchServingConcurrency } from "./serving-concurrency.js";
import { benchServingShadow } from "./serving-shadow.js";
import { benchServingStreams } from "./serving-streams.js";
import { benchSessionOptions } from "./session-options.js";
import { benchStoreEngines } from "./store-engines.js";
import { benchSwapUnderLoad } from "./swap-under-load.js";
import { benchTelemetryFlush } from "./telemetry-flush.js";
import { benchTelemetryIngest } from "./telemetry-ingest.js";
import { benchVerifyExtract } from "./verify-extract.js";

/**
 * `npm run bench`: each scenario prints one JSON line with its figure and an anchor measured
 * in the same run (architecture.md §9). `npm run bench -- <scenario>` runs one.
 */
const SCENARIOS: Record<string, () => Promise<Record<string, unknown>>> = {
  "telemetry-ingest": () => benchTelemetryIngest(),
  "telemetry-flush": () => benchTelemetryFlush(),
  "local-infer-overhead": () => benchInferOverhead(Number(process.env.BENCH_N ?? 1000)),
  "quantize-int8": () => benchQuantize(),
  "swap-under-load": () => benchSwapUnderLoad(),
  "event-loop-responsiveness": () => benchEventLoop(),
  "session-options": () =>
    benchSessionOptions(Number(process.env.BENCH_N ?? 300), Number(process.env.BENCH_ROUNDS ?? 3)),
  "serving-binary-vs-json": () => benchServingBinary(Number(process.env.BENCH_BINARY_N ?? 100)),
  "serving-dynamic-batching": () => benchServingBatching(),
  "serving-concurrency": () => benchServingConcurrency(),
  "serving-shadow-latency": () => benchServingShadow(),
  "verify-extract": () => benchVerifyExtract(Number(process.env.BENCH_VX_N ?? 20)),
  "agent-idle": () =>
    benchAgentIdle(Number(process.env.BENCH_IDLE_SECONDS ?? 20), process.env.BENCH_IDLE_BUNDLE === "1"),
  "agent-modules": () => benchAgentModules(),
  "bundle-delivery": () => benchBundleDelivery(Number(process.env.BENCH_RUNS ?? 5)),
  "bundle-sizes": () => benchBundleSizes(),
  "feedback-window": () => benchFeedbackWindow(),
  fanout: () => benchFanout(Number(process.env.BENCH_FANOUT_N ?? 200)),
  "fleet-scale": () =>
    benchFleetScale(Number(process.env.BENCH_SCALE_N ?? 1000), process.env.BENCH_SCALE_BROKER ?? "both"),
  "bundle-delta": () => benchBundleDelta(),
  "store-engines": () => benchStoreEngines(Number(process.env.BENCH_STORE_N ?? 500)),
  "serving-streams": () => benchServingStreams(Number(process.env.BENCH_STREAM_FRAMES ?? 2000)),
  "quantize-static": () => benchQuantizeStatic(),
};

const only = process.argv.slice(2);
console.log(
  JSON.stringify({
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
    },
  }),
);
for (const [name, run] of Object.entries(SCENARIOS)) {
  if (only.length > 0 && !only.includes(name)) continue;
  console.log(JSON.stringify(await run()));
}

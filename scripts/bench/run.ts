import { cpus, totalmem } from "node:os";
import { benchInferOverhead } from "./infer-overhead.js";

/**
 * `npm run bench`: each scenario prints one JSON line with its figure and an anchor measured
 * in the same run (DESIGN §9). `npm run bench -- <scenario>` runs one.
 */
const SCENARIOS: Record<string, () => Promise<Record<string, unknown>>> = {
  "local-infer-overhead": () => benchInferOverhead(Number(process.env.BENCH_N ?? 1000)),
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

import { readFile } from "node:fs/promises";
import path from "node:path";
import { toEdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { readBundleSamples } from "../../shared/samples-codec.js";
import type { JsonTensor, SamplesFile } from "../../shared/schemas/tensor.js";
import type { Version } from "./runtime-types.js";
import { zerosFor } from "./tensor-validation.js";

async function readSamples(dir: string): Promise<SamplesFile | null> {
  try {
    return await readBundleSamples((f) => readFile(path.join(dir, f)));
  } catch {
    return null;
  }
}

/**
 * One run so the first real request does not pay for lazy allocations. With a golden sample a failure
 * is fatal (the bundle's own input does not run). Without one we guess zeros with dynamic dims = 1,
 * which some models legitimately refuse (e.g. a minimum frame length), so that failure is only logged.
 */
export async function warmUp(
  v: Version,
  run: (inputs: Record<string, JsonTensor>) => Promise<unknown>,
  log: Logger,
): Promise<void> {
  const first = (await readSamples(v.installed.dir))?.samples[0];
  if (first) {
    await run(first.inputs);
    return;
  }
  const inputs: Record<string, JsonTensor> = {};
  for (const spec of v.installed.manifest.inputs) inputs[spec.name] = zerosFor(spec);
  try {
    await run(inputs);
  } catch (err) {
    if (!v.host.alive()) throw err;
    log.warn(
      { version: `${v.installed.model}@${v.installed.version}`, err: toEdgeFleetError(err).message },
      "warm-up with zeros failed; continuing",
    );
  }
}

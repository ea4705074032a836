import { t as tarList } from "tar";
import { EdgeFleetError } from "../../shared/errors.js";
import type { SampleSummary } from "../../shared/http/models.js";
import { readBundleSamples, SAMPLES_BLOB_FILE } from "../../shared/samples-codec.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";

/** Values shown per output: enough to recognise a result, small enough for any tensor. */
const PREVIEW = 8;

/**
 * The samples a bundle ships (inputs and the fp32 outputs the device's smoke test expects), read
 * from the signed bundle itself and summarised: shapes, and for outputs the first values and the
 * arg-max. What the dashboard's models page shows (issue 15); the full tensors stay in the bundle.
 */
export async function summariseBundleSamples(bundlePath: string): Promise<SampleSummary[]> {
  const wanted = new Set(["samples.json", SAMPLES_BLOB_FILE]);
  const files = new Map<string, Buffer>();
  // Listing reads the (possibly gzipped) tar once and keeps only the two small sample files.
  await tarList({
    file: bundlePath,
    filter: (path) => wanted.has(path.replace(/^\.\//, "")),
    onReadEntry: (entry) => {
      const parts: Buffer[] = [];
      entry.on("data", (d: Buffer) => parts.push(d));
      entry.on("end", () => files.set(entry.path.replace(/^\.\//, ""), Buffer.concat(parts)));
    },
  });
  const read = async (f: string) => {
    const b = files.get(f);
    if (!b) throw new EdgeFleetError("NOT_FOUND", `the bundle has no ${f}`);
    return b;
  };
  const { samples } = await readBundleSamples(read);
  const shapeOf = (t: JsonTensor) => ({ datatype: t.datatype, shape: t.shape });
  return samples.map((s, i) => ({
    name: s.name ?? `sample ${i + 1}`,
    inputs: Object.entries(s.inputs).map(([name, t]) => ({ name, ...shapeOf(t) })),
    outputs: Object.entries(s.outputs).map(([name, t]) => {
      const values = (t.data as unknown[]).slice(0, PREVIEW).map((v) => (typeof v === "number" ? v : String(v)));
      let argmax: number | null = null;
      if (typeof t.data[0] === "number") {
        const d = t.data as number[];
        argmax = 0;
        for (let k = 1; k < d.length; k++) if (d[k]! > d[argmax]!) argmax = k;
      }
      return { name, ...shapeOf(t), preview: values, argmax };
    }),
  }));
}

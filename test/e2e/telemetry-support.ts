import type { FleetServer } from "../../fleet-server/main.js";
import { sileroInputs, sileroModelPath } from "../../scripts/demo/silero.js";
import type { BaselineInput } from "../../shared/schemas/baseline.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { seededRandom } from "../../shared/seeded-random.js";
import { runDirect } from "../helpers/onnx-direct.js";

/** GET on the fleet server's operator API with the admin token. */
export async function serverGet<T>(server: FleetServer, path: string): Promise<T> {
  const res = await fetch(`${server.httpUrl}${path}`, { headers: { authorization: `Bearer ${server.adminToken}` } });
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** Seeded PRNG (mulberry32, the agent's own) so "drawn from the baseline" is reproducible. */
export const seeded = seededRandom;

/** One Silero frame from the "population": a tone of random pitch and loudness. */
export function drawFrame(random: () => number, loud = false): Record<string, JsonTensor> {
  const hz = 200 + Math.floor(random() * 1800);
  const amplitude = loud ? 0.8 + random() * 0.2 : 0.1 + random() * 0.4;
  return sileroInputs(hz, amplitude);
}

const AUDIO_EDGES = Array.from({ length: 21 }, (_, i) => Math.round((-1 + i * 0.1) * 10) / 10);
const UNIT_EDGES = Array.from({ length: 11 }, (_, i) => i / 10);

function histogram(edges: number[], xs: number[]): number[] {
  const counts = new Array<number>(edges.length - 1).fill(0);
  for (const x of xs) {
    let b = edges.findIndex((e, i) => i > 0 && x < e) - 1;
    if (b < 0) b = x < edges[0]! ? 0 : counts.length - 1;
    counts[b]! += 1;
  }
  return counts;
}

/**
 * A Silero baseline built like a training pipeline would: `n` frames from the population,
 * input audio values and per-frame RMS (data drift), and the model's speech probability run
 * directly with onnxruntime-node (prediction drift).
 */
export async function sileroBaseline(n = 300, seed = 1): Promise<BaselineInput> {
  const random = seeded(seed);
  const frames = Array.from({ length: n }, () => drawFrame(random));
  const audio = frames.flatMap((f) => f.input!.data as number[]);
  const rms = frames.map((f) => {
    const xs = f.input!.data as number[];
    return Math.sqrt(xs.reduce((a, x) => a + x * x, 0) / xs.length);
  });
  const speech: number[] = [];
  for (const f of frames.slice(0, 60)) {
    const out = await runDirect(sileroModelPath(), f);
    speech.push(Number(out.output!.data[0]));
  }
  return {
    version: 1,
    source: `e2e synthetic tones, ${n} frames, seed ${seed}`,
    features: [
      {
        name: "audio",
        source: "input",
        tensor: "input",
        reduce: "values",
        edges: AUDIO_EDGES,
        counts: histogram(AUDIO_EDGES, audio),
      },
      {
        name: "audio_rms",
        source: "input",
        tensor: "input",
        reduce: "rms",
        edges: UNIT_EDGES,
        counts: histogram(UNIT_EDGES, rms),
      },
      {
        name: "speech",
        source: "output",
        tensor: "output",
        reduce: "values",
        edges: UNIT_EDGES,
        counts: histogram(UNIT_EDGES, speech),
      },
    ],
  };
}

import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { pino } from "pino";
import { spawnModelHost } from "../../agent/runtime/model-host.js";
import type { HostSessionOptions } from "../../agent/runtime/session-options.js";
import { systemClock } from "../../shared/clock.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { jsonToRaw, type RawTensor } from "../../shared/tensors.js";
import { sileroInputs, sileroModelPath } from "../demo/silero.js";
import { realModels } from "./quantize.js";
import { percentile } from "./stats.js";

/**
 * Scenario "session options" (issue 13: why ORT runs ~2× slower in a model host than in-process, and
 * which options suit a profile). For each option set, interleaved over rounds:
 *   inprocHot    — `session.run` back to back in this process (the anchor of local-infer-overhead);
 *   inprocSlept  — the same session after this process slept 1 ms (as a host does between requests);
 *   hostOrt      — `session.run` inside a real model host, requests back to back (`computeMs`);
 *   hostRoundTrip, hostCpuMsPerRequest — the host's whole round trip and its CPU time per request
 *                  (/proc: spinning threads show here).
 * BENCH_SO_MODEL=ppocr-det-v4 (or another id of quantize.ts's realModels) instead of Silero.
 */
interface OptionSet {
  name: string;
  intra?: number;
  extra?: Record<string, string>;
}

const SETS: OptionSet[] = [
  { name: "ort-default (threads=cores, spinning)" },
  { name: "spinning only during a run", extra: { "session.force_spinning_stop": "1" } },
  { name: "threads=cores, no spinning", extra: { "session.intra_op.allow_spinning": "0" } },
  { name: "1 thread, no spinning", intra: 1, extra: { "session.intra_op.allow_spinning": "0" } },
];

function options(s: OptionSet): HostSessionOptions {
  return {
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    enableCpuMemArena: true,
    enableMemPattern: true,
    executionProviders: ["cpu"],
    interOpNumThreads: 1,
    ...(s.intra ? { intraOpNumThreads: s.intra } : {}),
    extra: { ...s.extra },
  };
}

/** CPU time (ms) of a process so far, from /proc (Linux). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // USER_HZ = 100 on Linux
}

const p50 = (xs: number[]) =>
  Math.round(
    percentile(
      [...xs].sort((a, b) => a - b),
      50,
    ) * 1000,
  ) / 1000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function timed(n: number, before: () => Promise<void> | void, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    await before();
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

export async function benchSessionOptions(n = 300, rounds = 3): Promise<Record<string, unknown>> {
  const modelId = process.env.BENCH_SO_MODEL;
  const model = modelId ? realModels().find((m) => m.id === modelId) : undefined;
  if (modelId && !model) throw new Error(`unknown BENCH_SO_MODEL ${modelId}`);
  const modelPath = model ? model.path : sileroModelPath();
  const inputs: Record<string, JsonTensor> = model ? model.samples[0]!.inputs : sileroInputs(440);
  const raws: Record<string, RawTensor> = {};
  for (const [k, t] of Object.entries(inputs)) raws[k] = jsonToRaw(k, t);
  const log = pino({ level: "silent" });
  const results: Record<string, Record<string, number[]>> = {};
  const add = (set: string, k: string, v: number) => {
    const perSet = results[set] ?? {};
    results[set] = perSet;
    const list = perSet[k] ?? [];
    perSet[k] = list;
    list.push(Math.round(v * 1000) / 1000);
  };
  for (let round = 0; round < rounds; round++) {
    for (const s of SETS) {
      const session = await ort.InferenceSession.create(modelPath, options(s));
      const feeds: Record<string, ort.Tensor> = {};
      for (const [k, r] of Object.entries(raws)) {
        feeds[k] = new ort.Tensor(r.type as "float32", r.data as Float32Array, r.dims);
      }
      await timed(
        20,
        () => {},
        () => session.run(feeds),
      );
      add(
        s.name,
        "inprocHotP50",
        p50(
          await timed(
            n,
            () => {},
            () => session.run(feeds),
          ),
        ),
      );
      add(
        s.name,
        "inprocSleptP50",
        p50(
          await timed(
            Math.ceil(n / 3),
            () => sleep(1),
            () => session.run(feeds),
          ),
        ),
      );
      await session.release();

      const host = await spawnModelHost({ log, clock: systemClock }, { modelPath, options: options(s), label: s.name });
      try {
        for (let i = 0; i < 20; i++) await host.run(raws);
        const ortMs: number[] = [];
        const cpu0 = cpuMs(host.pid);
        const trips = await timed(
          n,
          () => {},
          async () => ortMs.push((await host.run(raws)).computeMs),
        );
        add(s.name, "hostCpuMsPerRequest", (cpuMs(host.pid) - cpu0) / n);
        add(s.name, "hostOrtP50", p50(ortMs));
        add(s.name, "hostRoundTripP50", p50(trips));
      } finally {
        await host.stop();
      }
    }
  }
  return { scenario: "session-options", model: modelId ?? "silero-vad-v5", rounds, n, perRound: results };
}

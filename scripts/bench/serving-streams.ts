import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { createSocketApi } from "../../agent/api/socket-api.js";
import { SocketClient } from "../../agent/client/socket-client.js";
import { loadProfileFile } from "../../agent/profile/load-profiles.js";
import { createModelRuntime } from "../../agent/runtime/runtime.js";
import { createSequenceStore } from "../../agent/runtime/sequence-store.js";
import { systemClock } from "../../shared/clock.js";
import { seededRandom } from "../../shared/seeded-random.js";
import { sileroInputs, sileroManifest, sileroModelPath } from "../demo/silero.js";
import { summarize } from "./stats.js";

/**
 * Scenario "serving-streams" (issue 18): Silero VAD v5 over 32 ms frames (512 samples at 16 kHz) through
 * the agent's socket, three ways in the same run, one sequence at a time:
 *   stateless — each frame an independent v2 request carrying the 2×1×128 state and `sr` in its body,
 *               the app feeding back `stateN` (what apps did before sequences);
 *   sequence  — each frame a v2 request with `sequence_id`, only the audio in the body;
 *   stream    — one NDJSON stream (agent/api/v2-stream.ts), frames written as fast as it takes them
 *               (throughput; a frame's latency, write → its answer line, includes queueing behind
 *               the app's own earlier frames, up to the stream depth and the socket buffers);
 *   streamLockstep — one stream, the next frame written once the previous answer is read (latency).
 */
export async function benchServingStreams(frames = 2000): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), "ef-bench-streams-"));
  const log = pino({ level: "silent" });
  const profile = await loadProfileFile(new URL("../../device-profiles/generic-x64.json", import.meta.url).pathname);
  const runtime = createModelRuntime({ log, clock: systemClock, profile });
  const socketPath = join(dir, "a.sock");
  const api = createSocketApi({
    log,
    runtime,
    socketPath,
    version: "bench",
    status: () => ({}),
    sequences: createSequenceStore({ runtime, clock: systemClock, log }),
  });
  await api.listen();
  try {
    const mdir = join(dir, "vad");
    await mkdir(mdir);
    await copyFile(sileroModelPath(), join(mdir, "model.onnx"));
    await writeFile(
      join(mdir, "samples.json"),
      JSON.stringify({ samples: [{ inputs: sileroInputs(), outputs: {}, tolerance: { abs: 1e-4, rel: 1e-3 } }] }),
    );
    const manifest = {
      ...sileroManifest("5.0.0"),
      sequence: {
        state: [
          { input: "state", output: "stateN", initial: { datatype: "FP32" as const, shape: [2, 1, 128], fill: 0 } },
        ],
        constants: [{ input: "sr", value: { datatype: "INT64" as const, shape: [], data: [16000] } }],
        windows: [],
        stateCompatibleWith: [],
      },
    };
    const v = await runtime.load({
      model: "silero-vad",
      version: "5.0.0",
      variant: "fp32",
      sha256: "0".repeat(64),
      releaseCounter: 1,
      dir: mdir,
      manifest,
    });
    await runtime.activate(v);
    const client = new SocketClient(socketPath);
    const rnd = seededRandom(18);
    const audio = Array.from({ length: frames }, () =>
      Array.from({ length: 512 }, () => Math.fround((rnd() - 0.5) * 0.4)),
    );
    const input = (n: number) => ({ name: "input", datatype: "FP32", shape: [1, 512], data: audio[n]! });
    const warm = Math.min(50, frames);

    const timed = async (run: (n: number) => Promise<void>) => {
      const lat: number[] = [];
      for (let n = 0; n < warm; n++) await run(n);
      const t0 = performance.now();
      for (let n = 0; n < frames; n++) {
        const s = performance.now();
        await run(n);
        lat.push(performance.now() - s);
      }
      return { lat, ms: performance.now() - t0 };
    };

    let state: number[] = new Array(256).fill(0);
    const stateless = await timed(async (n) => {
      const r = await client.infer("silero-vad", [
        input(n),
        { name: "state", datatype: "FP32", shape: [2, 1, 128], data: state },
        { name: "sr", datatype: "INT64", shape: [], data: [16000] },
      ]);
      state = r.outputs.find((o) => o.name === "stateN")!.data as number[];
    });

    // One sequence for warm-up and timing alike: its state simply goes on.
    const seq = client.sequence("silero-vad");
    const sequence = await timed(async (n) => {
      await seq.infer([input(n)]);
    });

    // The stream: a writer as fast as back-pressure lets it, a reader timing each answer from its write.
    const s = client.stream("silero-vad");
    const written: number[] = [];
    const t0 = performance.now();
    const writer = (async () => {
      for (let n = 0; n < frames; n++) {
        written.push(performance.now());
        await s.write([input(n)]);
      }
      await s.end();
    })();
    const streamLat: number[] = [];
    for await (const r of s.results()) {
      if ("error" in r) throw new Error(`${r.code}: ${r.error}`);
      streamLat.push(performance.now() - written[streamLat.length]!);
    }
    await writer;
    const streamMs = performance.now() - t0;
    // Lockstep: the next frame is written once the previous answer is read, as a live source slower
    // than the model sees it: the per-frame latency without queueing behind the app's own frames.
    const ls = client.stream("silero-vad");
    const answers = ls.results();
    const lockstep = await timed(async (n) => {
      await ls.write([input(n)]);
      const r = await answers.next();
      if (r.done || "error" in r.value) throw new Error("stream ended early");
    });
    await ls.end();
    for await (const _ of answers);
    const fps = (ms: number) => Math.round((frames / ms) * 1000);
    return {
      scenario: "serving-streams",
      frames,
      loadavg1m: Math.round(loadavg()[0]! * 100) / 100,
      stateless: { framesPerSec: fps(stateless.ms), latency: summarize(stateless.lat) },
      sequence: { framesPerSec: fps(sequence.ms), latency: summarize(sequence.lat) },
      stream: { framesPerSec: fps(streamMs), latency: summarize(streamLat) },
      streamLockstep: { framesPerSec: fps(lockstep.ms), latency: summarize(lockstep.lat) },
    };
  } finally {
    await api.close();
    await runtime.close();
    await rm(dir, { recursive: true, force: true });
  }
}

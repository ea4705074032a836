import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { pino } from "pino";
import { createSocketApi } from "../../agent/api/socket-api.js";
import { SocketClient } from "../../agent/client/socket-client.js";
import { loadProfileFile } from "../../agent/profile/load-profiles.js";
import { createModelRuntime } from "../../agent/runtime/runtime.js";
import { sessionOptionsFromProfile } from "../../agent/runtime/session-options.js";
import { systemClock } from "../../shared/clock.js";
import { jsonToRaw } from "../../shared/tensors.js";
import { sileroInputs, sileroManifest, sileroModelPath } from "../demo/silero.js";
import { createStageRecorder, stageMedians, type Traced } from "./stages.js";
import { ratio, summarize, timeSequential } from "./stats.js";

const total = (t: Traced) => t.client1 - t.client0;

/**
 * Scenario "local infer overhead" (architecture.md §9): the same Silero VAD request
 *   anchor  — onnxruntime-node in-process, same session options;
 *   ipc     — through the agent runtime (host process, structured-clone tensors);
 *   socket  — a local app's full path: HTTP/1.1 over the Unix socket, JSON tensors, host process.
 */
const MANIFEST = sileroManifest();

export async function benchInferOverhead(n = 1000): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), "ef-bench-"));
  // BENCH_PROFILE: another profile file (session options are a per-profile trade-off, docs/operations.md).
  const profile = await loadProfileFile(
    process.env.BENCH_PROFILE ?? new URL("../../device-profiles/generic-x64.json", import.meta.url).pathname,
  );
  const log = pino({ level: "silent" });
  const inputs = sileroInputs(440);
  const runtime = createModelRuntime({ log, clock: systemClock, profile });
  const rec = createStageRecorder();
  runtime.observe(rec.onRecord);
  const api = createSocketApi({
    onInferStages: rec.onHttp,
    log,
    runtime,
    status: () => ({}),
    socketPath: join(dir, "a.sock"),
    version: "0.0.0-bench",
  });
  try {
    await copyFile(sileroModelPath(), join(dir, "model.onnx"));
    await writeFile(
      join(dir, "samples.json"),
      JSON.stringify({ samples: [{ inputs, outputs: {}, tolerance: { abs: 1e-4, rel: 1e-3 } }] }),
    );

    const session = await ort.InferenceSession.create(sileroModelPath(), sessionOptionsFromProfile(profile));
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(inputs)) {
      const raw = jsonToRaw(name, t);
      feeds[name] = new ort.Tensor(raw.type as "float32", raw.data as Float32Array, raw.dims);
    }
    const anchor = summarize(await timeSequential(n, 50, () => session.run(feeds)));
    await session.release();

    const loaded = await runtime.load({
      model: "silero-vad",
      version: "5.0.0",
      variant: "fp32",
      sha256: "0".repeat(64),
      releaseCounter: 1,
      dir,
      manifest: MANIFEST,
    });
    await runtime.activate(loaded);
    const ipcTraces = await rec.time(n, 50, () => runtime.infer({ model: "silero-vad", inputs }));
    const ipc = summarize(ipcTraces.map(total));

    await api.listen();
    const client = new SocketClient(join(dir, "a.sock"));
    const socketTraces = await rec.time(n, 50, () => client.inferTensors("silero-vad", inputs));
    const socket = summarize(socketTraces.map(total));

    return {
      scenario: "local-infer-overhead",
      model: "silero_vad_v5 (fp32)",
      profile: profile.id,
      anchor: { what: "in-process onnxruntime-node session.run", ...anchor },
      ipc: { what: "agent runtime → model host process", ...ipc, stagesP50Ms: stageMedians(ipcTraces) },
      figure: { what: "Unix socket v2 JSON infer → model host", ...socket, stagesP50Ms: stageMedians(socketTraces) },
      ratioP50: ratio(socket.p50Ms, anchor.p50Ms),
      ratioP99: ratio(socket.p99Ms, anchor.p99Ms),
      overheadP50Ms: Math.round((socket.p50Ms - anchor.p50Ms) * 1000) / 1000,
    };
  } finally {
    await api.close();
    await runtime.close();
    await rm(dir, { recursive: true, force: true });
  }
}

import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { createSocketApi } from "../../agent/api/socket-api.js";
import { SocketClient } from "../../agent/client/socket-client.js";
import { loadProfileFile } from "../../agent/profile/load-profiles.js";
import type { InstalledModel } from "../../agent/runtime/model-runtime.js";
import { type AgentModelRuntime, createModelRuntime } from "../../agent/runtime/runtime.js";
import { systemClock } from "../../shared/clock.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { sileroInputs, sileroManifest, sileroModelPath } from "../demo/silero.js";

/**
 * The agent's serving path without MQTT: the real runtime (one host process per version) behind the
 * real Unix-socket API, in this process, with Silero VAD installed as any number of versions.
 */
export interface ServingFixture {
  runtime: AgentModelRuntime;
  socketPath: string;
  inputs: Record<string, JsonTensor>;
  install(version: string): Promise<InstalledModel>;
  close(): Promise<void>;
}

const manifest = (version: string) => sileroManifest(version);

export async function startServingFixture(): Promise<ServingFixture> {
  const dir = await mkdtemp(join(tmpdir(), "ef-bench-swap-"));
  const profile = await loadProfileFile(new URL("../../device-profiles/generic-x64.json", import.meta.url).pathname);
  const log = pino({ level: "silent" });
  const inputs = sileroInputs(440);
  const runtime = createModelRuntime({ log, clock: systemClock, profile });
  const socketPath = join(dir, "agent.sock");
  const api = createSocketApi({ log, runtime, status: () => ({}), socketPath, version: "0.0.0-bench" });
  await api.listen();
  return {
    runtime,
    socketPath,
    inputs,
    async install(version) {
      const vdir = join(dir, version);
      await mkdir(vdir, { recursive: true });
      await copyFile(sileroModelPath(), join(vdir, "model.onnx"));
      const samples = { samples: [{ inputs, outputs: {}, tolerance: { abs: 1e-4, rel: 1e-3 } }] };
      await writeFile(join(vdir, "samples.json"), JSON.stringify(samples));
      const sha256 = version.replace(/\D/g, "").padEnd(64, "0").slice(0, 64);
      return {
        model: "silero-vad",
        version,
        variant: "fp32",
        sha256,
        releaseCounter: 1,
        dir: vdir,
        manifest: manifest(version),
      };
    },
    async close() {
      await api.close();
      await runtime.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Closed-loop clients: each sends the next request when the previous answers, until `stop()`. */
export function closedLoop(socketPath: string, clients: number, send: (c: SocketClient) => Promise<unknown>) {
  const samples: { start: number; ms: number; ok: boolean }[] = [];
  let running = true;
  const loops = Array.from({ length: clients }, async () => {
    const c = new SocketClient(socketPath);
    while (running) {
      const start = performance.now();
      let ok = true;
      try {
        await send(c);
      } catch {
        ok = false;
      }
      samples.push({ start, ms: performance.now() - start, ok });
    }
  });
  return {
    samples,
    async stop() {
      running = false;
      await Promise.all(loops);
      return samples;
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

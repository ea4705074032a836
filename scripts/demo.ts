import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { SocketClient } from "../agent/client/socket-client.js";
import { startFleetServer } from "../fleet-server/main.js";
import { createLogger } from "../shared/logger.js";
import { jsonToRaw } from "../shared/tensors.js";
import { sileroInputs, sileroModelPath, sileroSamples } from "./demo/silero.js";
import { ApiClient } from "./fleetctl/api-client.js";
import { bar, createProgressLine, formatBytes } from "./fleetctl/progress.js";

/**
 * `npm run demo`: the whole system on one machine (architecture.md §7). A fleet server with its embedded
 * broker, three agent processes with different device profiles, a real model from an npm package
 * pushed, rolled out, committed everywhere, and queried over an agent's Unix socket.
 */
const REPO = fileURLToPath(new URL("../", import.meta.url));
const DEVICES = [
  { id: "demo-x64", profile: "generic-x64", tags: { site: "lab" } },
  { id: "demo-pi4", profile: "raspberry-pi-4", tags: { site: "lab" } },
  { id: "demo-gateway", profile: "x86-gateway", tags: { site: "lab" } },
];

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function main(): Promise<number> {
  const root = await mkdtemp(join(tmpdir(), "edgefleet-demo-"));
  const agents: ChildProcess[] = [];
  const log = createLogger({ name: "fleet-server", level: process.env.LOG_LEVEL ?? "warn" });
  const server = await startFleetServer({ dataDir: join(root, "server"), httpPort: 0, mqttPort: 0, log });
  try {
    say(`fleet server: HTTP ${server.httpUrl}, MQTT ${server.mqttUrl} (embedded aedes)`);
    const api = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });

    for (const d of DEVICES) {
      const { password } = await api.enrollDevice({ id: d.id, tags: d.tags, profile: d.profile });
      const dataDir = join(root, d.id);
      const config = {
        deviceId: d.id,
        mqttUrl: server.mqttUrl,
        password,
        dataDir,
        socketPath: join(root, `${d.id}.sock`),
        rootPath: server.rootJsonPath,
        profile: d.profile,
        logLevel: process.env.LOG_LEVEL ?? "warn",
      };
      const configPath = join(root, `${d.id}.json`);
      await writeFile(configPath, JSON.stringify(config, null, 2));
      const proc = spawn(process.execPath, [join(REPO, "bin/edge-agent.js"), "--config", configPath], {
        stdio: ["ignore", "inherit", "inherit"],
        env: { ...process.env, LOG_FORMAT: process.env.LOG_FORMAT ?? "json" },
      });
      agents.push(proc);
      say(`agent ${d.id} started (profile ${d.profile})`);
    }

    const modelPath = sileroModelPath();
    const line = createProgressLine(process.stdout);
    const upload = await api.upload(modelPath, (p) =>
      line.update(`uploading Silero VAD ${bar(p.bytes / p.total)} ${formatBytes(p.bytes)}`, p.bytes / p.total),
    );
    line.done(`uploaded Silero VAD v5 (${formatBytes(upload.size)})`);
    await api.createModel({
      name: "silero-vad",
      version: "5.0.0",
      upload: upload.sha256,
      samples: sileroSamples(),
      lineage: { source: "npm:@ricky0123/vad-web/dist/silero_vad_v5.onnx" },
    });
    say("model silero-vad@5.0.0 registered: signed fp32 bundle built, sample outputs recorded");

    const rollout = await api.createRollout({
      model: "silero-vad",
      version: "5.0.0",
      target: { tags: { site: "lab" } },
      healthPolicy: { probationSeconds: 2 },
    });
    const final = await api.waitForRollout(rollout.id, {
      timeoutMs: 180_000,
      onUpdate: (s) => {
        const c = s.counts;
        line.update(`rollout ${bar(c.total ? c.committed / c.total : 0)} committed ${c.committed}/${c.total}`);
      },
    });
    line.done(`rollout ${final.id}: ${final.status} (${final.counts.committed}/${final.counts.total} committed)`);
    if (final.status !== "completed") {
      for (const d of final.devices)
        say(`  ${d.deviceId}: ${d.state} ${d.error ? `${d.error.code} ${d.error.message}` : ""}`);
      return 1;
    }

    const first = DEVICES[0]!;
    const client = new SocketClient(join(root, `${first.id}.sock`));
    const inputs = sileroInputs(440);
    const res = await client.inferTensors("silero-vad", inputs);
    const prob = res.outputs.find((o) => o.name === "output")?.data[0];

    // The same input in-process, to show the socket path returns exactly what onnxruntime computes.
    const session = await ort.InferenceSession.create(modelPath);
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(inputs)) {
      const raw = jsonToRaw(name, t);
      feeds[name] = new ort.Tensor(raw.type as "float32", raw.data as Float32Array, raw.dims);
    }
    const direct = await session.run(feeds);
    const directProb = (direct.output!.data as Float32Array)[0];
    await session.release();

    say("");
    say("summary");
    say(`  devices committed:  ${final.counts.committed}/${final.counts.total}`);
    for (const d of final.devices) say(`    ${d.deviceId.padEnd(14)} ${d.state}`);
    say(`  infer over ${first.id}'s Unix socket: ${res.model_name}@${res.model_version} speech probability ${prob}`);
    say(`  same input in-process onnxruntime-node:           ${directProb}`);
    say(`  identical: ${prob === directProb}`);
    return prob === directProb ? 0 : 1;
  } finally {
    for (const a of agents) a.kill("SIGTERM");
    await Promise.all(agents.map((a) => new Promise((r) => (a.exitCode !== null ? r(null) : a.once("exit", r)))));
    await server.close();
    if (!process.env.KEEP_DEMO) await rm(root, { recursive: true, force: true });
  }
}

process.exitCode = await main();

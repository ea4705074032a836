import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { waitFor } from "../helpers/agent-process.js";
import { parsePrometheus, promValue } from "../helpers/prometheus.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { drawFrame, seeded, serverGet, sileroBaseline } from "./telemetry-support.js";

const ID = "e2e-drift";

interface Feature {
  name: string;
  drift: string;
  n: number;
  psi: number;
  ks: number | null;
}
interface Health {
  total: { requests: number; failures: number; p95Ms: number | null };
  cohorts: { cohort: string; requests: number }[];
  drift: { total: { data: Feature[]; prediction: Feature[] }; cohorts: { cohort: string }[] };
  alerts: { type: string; feature: string; drift: string; cohort: string; metric: string }[];
}

describe("telemetry e2e: drift against a bundle baseline, version health, Prometheus on both sides", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let client: SocketClient;
  let apiInferences = 0;

  const health = () => serverGet<Health>(h.server, "/v1/models/silero-vad/versions/5.0.0/health");
  const infer = async (frames: number, loud: boolean, random: () => number) => {
    for (let i = 0; i < frames; i++) {
      await client.inferTensors("silero-vad", drawFrame(random, loud));
      apiInferences++;
    }
  };
  /** Flushes on demand and waits until the server holds every API inference recorded so far. */
  const flushAndSettle = async () => {
    await client.json("POST", "/v1/telemetry/flush");
    await waitFor(
      "server caught up",
      async () => {
        const t = await serverGet<{ total: number }>(
          h.server,
          `/v1/devices/${ID}/telemetry?kind=inference&source=api&limit=1`,
        );
        const local = await client.json<{ rows: number; pending: number }>("GET", "/v1/telemetry");
        return t.total === apiInferences && local.rows === 0 && local.pending === 0;
      },
      60_000,
    );
    return health();
  };

  beforeAll(async () => {
    tmp = await makeTempDir("ef-tdr-");
    h = await startHarness(tmp.path);
    await h.startAgent(ID, "generic-x64", { telemetry: { drift: { window: 20_000, minSamples: 50 } } });
    const up = await h.api.upload(sileroModelPath());
    await h.api.createModel({
      name: "silero-vad",
      version: "5.0.0",
      upload: up.sha256,
      samples: sileroSamples(),
      baseline: await sileroBaseline(),
    } as Parameters<typeof h.api.createModel>[0]);
    const rollout = await h.api.createRollout({
      model: "silero-vad",
      version: "5.0.0",
      target: { deviceIds: [ID] },
      healthPolicy: { probationSeconds: 1 },
    });
    const final = await h.api.waitForRollout(rollout.id, { timeoutMs: 120_000 });
    expect(final.status).toBe("completed");
    client = await waitForServing(h.agents.get(ID)!, "silero-vad");
  }, 180_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("inputs drawn from the baseline's population stay below the PSI threshold: no alert", async () => {
    await infer(80, false, seeded(7));
    const hl = await flushAndSettle();
    const audio = hl.drift.total.data.find((f) => f.name === "audio")!;
    expect(audio.n).toBeGreaterThan(20_000 - 1);
    expect(audio.psi).toBeLessThan(0.1);
    expect(hl.drift.total.prediction.map((f) => f.name)).toEqual(["speech"]);
    expect(hl.alerts).toEqual([]);
    expect(hl.total.requests).toBe(apiInferences);
    expect(hl.total.failures).toBe(0);
    // The device joined through a staged rollout, so its records count in that stage's cohort.
    expect(hl.cohorts.map((c) => c.cohort)).toEqual(["stage-0"]);
  });

  it("a shifted (louder) population crosses the threshold and raises exactly one alert, kept while it persists", async () => {
    await infer(80, true, seeded(8));
    const hl = await flushAndSettle();
    const audio = hl.drift.total.data.find((f) => f.name === "audio")!;
    expect(audio.psi).toBeGreaterThan(0.2);
    expect(audio.ks).toBeGreaterThan(0);
    const audioAlerts = (x: Health) => x.alerts.filter((a) => a.feature === "audio");
    expect(audioAlerts(hl)).toHaveLength(1);
    expect(audioAlerts(hl)[0]).toMatchObject({
      type: "drift.alert.raised",
      drift: "data",
      cohort: "stage-0",
      metric: "psi",
    });

    await infer(40, true, seeded(9));
    const again = await flushAndSettle();
    expect(again.drift.total.data.find((f) => f.name === "audio")!.psi).toBeGreaterThan(0.2);
    // Still one for `audio` (hysteresis); per-frame RMS now has enough samples to be judged on
    // its own and may raise its own alert, always as data drift, never as prediction drift.
    expect(audioAlerts(again)).toHaveLength(1);
    expect(again.alerts.every((a) => a.type === "drift.alert.raised" && a.drift === "data")).toBe(true);
  });

  it("Prometheus text from the agent socket and the server parses with a real parser and agrees", async () => {
    const agentText = (await client.raw("GET", "/metrics")).body.toString("utf8");
    const agent = parsePrometheus(agentText);
    const labels = { model: "silero-vad", version: "5.0.0" };
    // Client requests only: the warm-up and smoke-test runs are counted apart.
    expect(promValue(agent, "edgefleet_inference_request_success_total", labels)).toBe(apiInferences);
    expect(promValue(agent, "edgefleet_inference_internal_total", labels)).toBeGreaterThan(0);
    const hist = agent.find((f) => f.name === "edgefleet_inference_request_duration_seconds")!;
    expect(hist.type).toBe("HISTOGRAM");
    // The +Inf bucket is the histogram's count.
    expect(Number(hist.metrics[0]!.buckets!["+Inf"])).toBe(apiInferences);
    expect(promValue(agent, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(promValue(agent, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(promValue(agent, "edgefleet_telemetry_buffer_rows")).toBe(0);
    expect(promValue(agent, "edgefleet_telemetry_buffer_dropped_rows", { reason: "ring_full" })).toBe(0);
    expect(promValue(agent, "edgefleet_drift_psi", { feature: "audio", drift: "data" })).toBeGreaterThan(0.2);

    const res = await fetch(`${h.server.httpUrl}/metrics`);
    expect(res.status).toBe(200);
    const server = parsePrometheus(await res.text());
    expect(promValue(server, "edgefleet_fleet_inference_request_success_total", labels)).toBe(apiInferences);
    expect(promValue(server, "edgefleet_telemetry_records_total", { result: "stored" })).toBeGreaterThan(apiInferences);
    const raised = (await health()).alerts.filter((a) => a.type === "drift.alert.raised").length;
    expect(promValue(server, "edgefleet_drift_alerts_total", { type: "drift.alert.raised", drift: "data" })).toBe(
      raised,
    );
    expect(promValue(server, "edgefleet_fleet_drift_psi", { feature: "audio", cohort: "stage-0" })).toBeGreaterThan(
      0.2,
    );
  });
});

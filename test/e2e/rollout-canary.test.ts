import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sileroInputs, sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import type { RolloutView } from "../../scripts/fleetctl/api-client.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";

/**
 * Issue 4 end to end: ten real agent processes (each with its own MQTT connection, SQLite data
 * dir and model host) against the embedded broker. A good version goes out in a 10/50/100
 * canary; then a version built for arm64 only — every x64 agent refuses it as INCOMPATIBLE —
 * trips the first stage's gate and is rolled back automatically by re-releasing 5.0.0's bytes
 * under a higher release counter.
 */
const AGENTS = Array.from({ length: 10 }, (_, i) => ({
  id: `canary-${String(i).padStart(2, "0")}`,
  profile: i % 2 === 0 ? "generic-x64" : "raspberry-pi-4",
}));
const TIMEOUT = 8 * 60_000;

type DeviceView = {
  reported: {
    models: {
      model: string;
      state: string;
      committed: { version: string; sha256: string; releaseCounter: number } | null;
    }[];
  } | null;
};

describe("staged rollouts across ten real agents", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let good: RolloutView;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-rollout-");
    h = await startHarness(tmp.path);
    await Promise.all(AGENTS.map((a) => h.startAgent(a.id, a.profile)));
    await h.pushSilero("5.0.0");
    const up = await h.api.upload(sileroModelPath());
    await h.api.createModel({
      name: "silero-vad",
      version: "5.1.0",
      upload: up.sha256,
      samples: sileroSamples(),
      compatibility: { arch: ["arm64"] },
    });
  }, TIMEOUT);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it(
    "a 10/50/100 canary advances stage by stage and completes on every device",
    async () => {
      const created = await h.api.createRollout({
        model: "silero-vad",
        version: "5.0.0",
        // One bundle for all: the rollback below expects one re-release (variants: rollout-variants).
        variant: "fp32",
        target: { tags: ["suite=e2e"] },
        strategy: "canary",
        stages: [
          { percent: 10, soakSeconds: 1 },
          { percent: 50, soakSeconds: 1 },
          { percent: 100, gates: { minDevices: 10 } },
        ],
        healthPolicy: { probationSeconds: 1 },
      });
      // Only the first stage's share is assigned before the answer: 10% of 10.
      expect(created.counts.total).toBe(1);
      expect(created.stage?.number).toBe(1);

      good = await h.api.waitForRollout(created.id, { timeoutMs: TIMEOUT, intervalMs: 1000 });
      expect(good.status, JSON.stringify({ reason: good.reason, devices: good.devices })).toBe("completed");
      expect(good.counts).toMatchObject({ total: 10, committed: 10, failed: 0 });
      expect(good.stages?.map((s) => s.counts.total)).toEqual([1, 4, 5]);
      expect(good.history?.filter((e) => e.type === "stage-advanced").map((e) => e.detail.stage)).toEqual([1, 2]);
      const client = await waitForServing(h.agents.get(AGENTS[3]!.id)!, "silero-vad");
      expect((await client.inferTensors("silero-vad", sileroInputs(300, 0.3))).model_version).toBe("5.0.0");
    },
    TIMEOUT,
  );

  it(
    "a bad version trips the first stage's gate and every touched device is rolled back to 5.0.0",
    async () => {
      const created = await h.api.createRollout({
        model: "silero-vad",
        version: "5.1.0",
        variant: "fp32",
        target: { tags: { suite: "e2e" } },
        stages: [{ percent: 20, gates: { minDevices: 2, maxFailedPercent: 0 } }, { percent: 50 }, { percent: 100 }],
        abort: { action: "rollback" },
        healthPolicy: { probationSeconds: 1 },
      });
      const final = await h.api.waitForRollout(created.id, {
        timeoutMs: TIMEOUT,
        intervalMs: 1000,
        until: (s) => s.status === "rolled-back",
      });
      // Stopped at stage 1: only its two devices were ever touched, both refused the bundle.
      expect(final.stage?.number).toBe(1);
      expect(final.devices).toHaveLength(2);
      expect(final.reason).toMatch(/stage 1 gate: failed 100% of 2 devices > maxFailedPercent 0/);
      for (const d of final.devices) {
        expect(d).toMatchObject({ stage: 0, outcome: "failed", reason: "INCOMPATIBLE" });
        expect(d.rollback?.bundle).toMatch(/^[0-9a-f]{64}$/);
      }
      const reRelease = final.devices[0]!.rollback!.bundle!;
      expect(new Set(final.devices.map((d) => d.rollback?.bundle))).toEqual(new Set([reRelease]));
      const original = good.bundle!;
      expect(reRelease).not.toBe(original);

      const touched = new Set(final.devices.map((d) => d.deviceId));
      for (const a of AGENTS) {
        const committed = await waitFor(
          `${a.id} committed after rollback`,
          async () => {
            const dev = (await h.api.getDevice(a.id)) as DeviceView;
            const m = dev.reported?.models.find((x) => x.model === "silero-vad");
            const want = touched.has(a.id) ? reRelease : original;
            return m?.state === "committed" && m.committed?.sha256 === want ? m.committed : null;
          },
          TIMEOUT,
        );
        expect(committed.version).toBe("5.0.0");
        // 5.0.0 was counter 1 and 5.1.0 counter 2: the re-release carries 3 (architecture.md §3).
        expect(committed.releaseCounter).toBe(touched.has(a.id) ? 3 : 1);
        const client = await waitForServing(h.agents.get(a.id)!, "silero-vad");
        const res = await client.inferTensors("silero-vad", sileroInputs(200, 0.5));
        expect(res.model_version).toBe("5.0.0");
      }
      const view = await h.api.getRollout(created.id);
      expect(view.devices.every((d) => d.rollback?.state === "committed")).toBe(true);
    },
    TIMEOUT,
  );
});

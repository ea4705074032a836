import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { sileroInputs } from "../../scripts/demo/silero.js";
import type { RolloutView } from "../../scripts/fleetctl/api-client.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";

/**
 * Issue 5, variant choice per device, with real agents: one rollout without `variant`, and each
 * device commits the variant its profile prefers — int8 on `raspberry-pi-4` (preferredVariants
 * int8, fp32), fp32 on `generic-x64` (fp32, int8). Then the x64 device measures both variants in
 * one probation (an int8 candidate against its fp32 baseline, with real traffic on both), the
 * server records the figures, and the next automatic rollout follows the faster one.
 */
const PI = "var-pi4";
const X64 = "var-x64";
const TIMEOUT = 5 * 60_000;
/** fleet-server/rollout/choose-variant.ts MIN_MEASURED_REQUESTS */
const MIN_REQUESTS = 50;

type DeviceView = {
  reported: {
    models: {
      model: string;
      state: string;
      committed: { version: string; variant: string; sha256: string } | null;
    }[];
  } | null;
  variantMeasurements: { model: string; variant: string; version: string; p50Ms: number; requests: number }[];
};
type MemberView = RolloutView["devices"][number] & { variant: string; bundle: string; variantReason: string };

async function committed(h: Harness, id: string, version: string) {
  return waitFor(
    `${id} committed silero-vad ${version}`,
    async () => {
      const dev = (await h.api.getDevice(id)) as DeviceView;
      const m = dev.reported?.models.find((x) => x.model === "silero-vad");
      return m?.state === "committed" && m.committed?.version === version ? m.committed : null;
    },
    TIMEOUT,
  );
}

function members(s: RolloutView): Map<string, MemberView> {
  return new Map((s.devices as MemberView[]).map((d) => [d.deviceId, d]));
}

/** Sends `n` requests, one at a time, so they count for whichever version is serving. */
async function traffic(client: SocketClient, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await client.inferTensors("silero-vad", sileroInputs(200 + i, 0.3));
}

describe("variants per device", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let variants: { variant: string; bundle: { sha256: string }; published: boolean }[];

  beforeAll(async () => {
    tmp = await makeTempDir("ef-rollout-variants-");
    h = await startHarness(tmp.path);
    await h.startAgent(PI, "raspberry-pi-4");
    await h.startAgent(X64, "generic-x64");
    await h.pushSilero("5.0.0");
    const version = (await h.api.getModelVersion("silero-vad", "5.0.0")) as { variants: typeof variants };
    variants = version.variants;
  }, TIMEOUT);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it(
    "one rollout without a variant: each device commits the variant its profile prefers",
    async () => {
      expect(variants.map((v) => [v.variant, v.published])).toEqual([
        ["fp32", true],
        ["int8", true],
      ]);
      const sha = Object.fromEntries(variants.map((v) => [v.variant, v.bundle.sha256]));
      const created = await h.api.createRollout({
        model: "silero-vad",
        version: "5.0.0",
        target: { tags: { suite: "e2e" } },
        healthPolicy: { probationSeconds: 1 },
      });
      expect(created.variant).toBe("auto");
      const final = await h.api.waitForRollout(created.id, { timeoutMs: TIMEOUT, intervalMs: 500 });
      expect(final.status, JSON.stringify(final.devices)).toBe("completed");
      expect(final.counts).toMatchObject({ total: 2, committed: 2, failed: 0 });
      const byDevice = members(final);
      expect(byDevice.get(PI)).toMatchObject({ variant: "int8", bundle: sha.int8, variantReason: "profile" });
      expect(byDevice.get(X64)).toMatchObject({ variant: "fp32", bundle: sha.fp32, variantReason: "profile" });

      expect(await committed(h, PI, "5.0.0")).toMatchObject({ variant: "int8", sha256: sha.int8 });
      expect(await committed(h, X64, "5.0.0")).toMatchObject({ variant: "fp32", sha256: sha.fp32 });

      // The int8 device answers like the fp32 one within the upload's accuracy policy (abs 0.05).
      const inputs = sileroInputs(440, 0.3);
      const pi = await (await waitForServing(h.agents.get(PI)!, "silero-vad")).inferTensors("silero-vad", inputs);
      const x64 = await (await waitForServing(h.agents.get(X64)!, "silero-vad")).inferTensors("silero-vad", inputs);
      const out = (r: typeof pi) => r.outputs.find((o) => o.name === "output")!.data as number[];
      expect(out(pi)).toHaveLength(1);
      expect(Math.abs(out(pi)[0]! - out(x64)[0]!)).toBeLessThanOrEqual(0.05);
      const state = (r: typeof pi) => r.outputs.find((o) => o.name === "stateN")!.data as number[];
      const maxAbs = Math.max(...state(x64).map((v) => Math.abs(v)));
      const maxDiff = Math.max(...state(pi).map((v, i) => Math.abs(v - state(x64)[i]!)));
      expect(maxDiff).toBeLessThanOrEqual(Math.max(0.05, 0.1 * maxAbs));
    },
    TIMEOUT,
  );

  it(
    "what a device measured for both variants is recorded and decides its next automatic rollout",
    async () => {
      await h.pushSilero("5.1.0");
      await h.pushSilero("5.2.0");
      const client = await waitForServing(h.agents.get(X64)!, "silero-vad");
      // The agent measures its baseline over the last two minutes of the serving (fp32) version.
      await traffic(client, MIN_REQUESTS + 10);
      const created = await h.api.createRollout({
        model: "silero-vad",
        version: "5.1.0",
        variant: "int8",
        target: { deviceIds: [X64] },
        // Which variant is faster here is what is being measured, not a reason to revert.
        healthPolicy: { probationSeconds: 1, probationRequests: MIN_REQUESTS + 10, maxP95LatencyRatio: 100 },
      });
      // Real traffic during probation, so the int8 candidate's figure has enough requests too.
      const done = h.api.waitForRollout(created.id, { timeoutMs: TIMEOUT, intervalMs: 500 });
      let settled = false;
      void done.finally(() => {
        settled = true;
      });
      while (!settled) await traffic(client, 5).catch(() => undefined);
      const final = await done;
      expect(final.status, JSON.stringify(final.devices)).toBe("completed");
      expect(members(final).get(X64)).toMatchObject({ variant: "int8", variantReason: "explicit" });

      const measured = await waitFor(
        "fp32 and int8 measurements with enough requests",
        async () => {
          const dev = (await h.api.getDevice(X64)) as DeviceView;
          const ms = dev.variantMeasurements.filter((m) => m.model === "silero-vad" && m.requests >= MIN_REQUESTS);
          return ms.length === 2 ? ms : null;
        },
        60_000,
      );
      const fp32 = measured.find((m) => m.variant === "fp32")!;
      const int8 = measured.find((m) => m.variant === "int8")!;
      expect(fp32.version).toBe("5.0.0");
      expect(int8.version).toBe("5.1.0");
      // The device whose profile prefers fp32 now follows its own figures.
      const faster = int8.p50Ms < fp32.p50Ms ? "int8" : "fp32";
      const next = await h.api.createRollout({
        model: "silero-vad",
        version: "5.2.0",
        target: { deviceIds: [X64] },
        healthPolicy: { probationSeconds: 1 },
      });
      expect(members(next).get(X64)).toMatchObject({
        variant: faster,
        variantReason: faster === "int8" ? "measured-faster" : "profile",
      });
      // The view says why the device did not get its profile's first choice (issue 20 §7).
      expect((members(next).get(X64) as { variantNote?: string }).variantNote).toBe(
        faster === "int8" ? "fp32 measured slower on this device" : undefined,
      );
      const last = await h.api.waitForRollout(next.id, { timeoutMs: TIMEOUT, intervalMs: 500 });
      expect(last.status, JSON.stringify(last.devices)).toBe("completed");
      expect(await committed(h, X64, "5.2.0")).toMatchObject({ variant: faster });
    },
    TIMEOUT,
  );
});

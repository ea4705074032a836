import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { sileroInputs } from "../../scripts/demo/silero.js";
import type { RolloutView } from "../../scripts/fleetctl/api-client.js";
import type { ReportedModel } from "../../shared/schemas/device-state.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";

/**
 * Issue 4 `shadow` / `ab` rollouts with a real agent through the fleet server (issue 8 agent side):
 * the server publishes the new version beside the active one; the agent installs it as a side
 * candidate (never swapped), the serving layer mirrors or splits requests, and `reported` carries
 * the side's health with shadow agreement, which the rollout gates judge. Silero 5.0.0 / 5.1.0 /
 * 5.2.0 are the same graph, so the shadow agrees on every request.
 */
const DEV = "shadow-x64";
const MODEL = "silero-vad";
const TIMEOUT = 5 * 60_000;
const MIN_REQUESTS = 20;

type DeviceView = { reported: { models: ReportedModel[] } | null };
/** The server's rollout view also says how the new version is served (fleet-server/rollout/view.ts). */
type WithMode = RolloutView & { servingMode: "active" | "shadow" | "ab" };

async function reportedModel(h: Harness): Promise<ReportedModel | null> {
  const dev = (await h.api.getDevice(DEV)) as DeviceView;
  return dev.reported?.models.find((m) => m.model === MODEL) ?? null;
}

async function infer(client: SocketClient, i: number, key?: string) {
  return client.inferTensors(MODEL, sileroInputs(300 + i, 0.3), key ? { parameters: { ab_key: key } } : {});
}

/** Sends traffic until `done` settles; returns every served version seen. */
async function trafficUntil<T>(client: SocketClient, done: Promise<T>): Promise<{ result: T; versions: Set<string> }> {
  let settled = false;
  void done.finally(() => {
    settled = true;
  });
  const versions = new Set<string>();
  for (let i = 0; !settled; i++) {
    const res = await infer(client, i).catch(() => null);
    if (res) versions.add(res.model_version);
  }
  return { result: await done, versions };
}

describe("shadow and A/B rollouts on the device", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let client: SocketClient;

  const rollout = (version: string, extra: Record<string, unknown>) =>
    h.api.createRollout({
      model: MODEL,
      version,
      variant: "fp32",
      target: { deviceIds: [DEV] },
      healthPolicy: { probationSeconds: 1 },
      ...extra,
    });

  beforeAll(async () => {
    tmp = await makeTempDir("ef-rollout-shadow-");
    h = await startHarness(tmp.path);
    await h.startAgent(DEV, "generic-x64");
    for (const v of ["5.0.0", "5.1.0", "5.2.0"]) await h.pushSilero(v);
    const first = await rollout("5.0.0", {});
    const done = await h.api.waitForRollout(first.id, { timeoutMs: TIMEOUT, intervalMs: 500 });
    expect(done.status, JSON.stringify(done.devices)).toBe("completed");
    client = await waitForServing(h.agents.get(DEV)!, MODEL);
  }, TIMEOUT);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it(
    "shadow: callers get the active version, the device reports agreement, the gate passes, promote swaps",
    async () => {
      const created = await rollout("5.1.0", {
        strategy: "shadow",
        shadowSampleRate: 1,
        stages: [{ percent: 100, gates: { minShadowAgreementPercent: 90, minRequestsPerDevice: MIN_REQUESTS } }],
      });
      expect((created as WithMode).servingMode).toBe("shadow");
      const { result: final, versions } = await trafficUntil(
        client,
        h.api.waitForRollout(created.id, { timeoutMs: TIMEOUT, intervalMs: 500 }),
      );
      expect(final.status, JSON.stringify(final)).toBe("completed");
      // The shadow never answered a caller.
      expect([...versions]).toEqual(["5.0.0"]);
      expect(final.gates).toMatchObject({ shadowDevices: 1, shadowAgreementPercent: 100, passing: true });

      const m = await reportedModel(h);
      expect(m).toMatchObject({ state: "committed", committed: { version: "5.0.0" }, candidate: null });
      expect(m?.side).toMatchObject({ mode: "shadow", version: "5.1.0", state: "committed" });
      expect(m?.side?.health.shadowAgreementPercent).toBe(100);
      expect(m?.side?.health.requests).toBeGreaterThanOrEqual(MIN_REQUESTS);
      expect(m?.side?.health.p95Ms).not.toBeNull();
      expect(m?.side?.baseline).toMatchObject({ version: "5.0.0" });
      expect(m?.side?.baseline?.p50Ms).not.toBeNull();
      // Requests pinned to the shadow's version reach it (the versioned v2 path).
      const pinned = await client.raw("GET", `/v2/models/${MODEL}/versions/5.1.0/ready`);
      expect(pinned.status).toBe(200);

      const promoted = await h.api.rolloutCommand(created.id, "promote");
      expect((promoted as WithMode).servingMode).toBe("active");
      const after = await waitFor(
        "5.1.0 committed after promote",
        async () => {
          const r = await reportedModel(h);
          return r?.state === "committed" && r.committed?.version === "5.1.0" && !r.side ? r : null;
        },
        TIMEOUT,
      );
      expect(after.probation).toMatchObject({ verdict: "passed", candidate: { version: "5.1.0" } });
      expect((await infer(client, 1)).model_version).toBe("5.1.0");
      const old = await client.raw("GET", `/v2/models/${MODEL}/versions/5.0.0/ready`);
      expect(old.status).not.toBe(200);
    },
    TIMEOUT,
  );

  it(
    "ab: both versions answer (each response says which), and rollback removes the side version",
    async () => {
      const created = await rollout("5.2.0", { strategy: "ab", abWeight: 0.5 });
      const side = await waitFor(
        "A/B side candidate running",
        async () => {
          const r = await reportedModel(h);
          return r?.side?.state === "committed" && r.side.version === "5.2.0" ? r.side : null;
        },
        TIMEOUT,
      );
      expect(side.mode).toBe("ab");
      const arms = new Map<string, Set<string>>();
      for (let i = 0; i < 80; i++) {
        const res = await infer(client, i);
        const arm = String(res.parameters?.ab_arm);
        arms.set(arm, (arms.get(arm) ?? new Set()).add(res.model_version));
      }
      expect(arms.get("control")).toEqual(new Set(["5.1.0"]));
      expect(arms.get("candidate")).toEqual(new Set(["5.2.0"]));
      // Sticky by key: one key always lands on one arm.
      const sticky = new Set<string>();
      for (let i = 0; i < 10; i++) sticky.add((await infer(client, i, "user-42")).model_version);
      expect(sticky.size).toBe(1);

      const metrics = await waitFor(
        "A/B figures per version in reported",
        async () => {
          const r = await reportedModel(h);
          const s = r?.side;
          return s && s.health.requests > 0 && s.baseline && s.baseline.requests > 0 ? s : null;
        },
        60_000,
      );
      expect(metrics.health).toMatchObject({ version: "5.2.0", shadowAgreementPercent: null });
      expect(metrics.health.p50Ms).not.toBeNull();
      expect(metrics.baseline).toMatchObject({ version: "5.1.0" });

      // A restart restores the side candidate from the agent's own store: the split goes on.
      client = await waitForServing(await h.restartAgent(DEV), MODEL);
      await waitFor(
        "A/B side restored after the restart",
        async () => {
          const r = await reportedModel(h);
          return r?.side?.state === "committed" && r.side.version === "5.2.0" && r.state === "committed";
        },
        TIMEOUT,
      );
      const afterRestart = new Set<string>();
      for (let i = 0; i < 60; i++) afterRestart.add((await infer(client, i)).model_version);
      expect(afterRestart).toEqual(new Set(["5.1.0", "5.2.0"]));

      await h.api.rolloutCommand(created.id, "rollback");
      const final: RolloutView = await h.api.waitForRollout(created.id, { timeoutMs: TIMEOUT, intervalMs: 500 });
      expect(final.status).toBe("rolled-back");
      const back = await waitFor(
        "side removed, 5.1.0 serving",
        async () => {
          const r = await reportedModel(h);
          return r?.state === "committed" && r.committed?.version === "5.1.0" && !r.side ? r : null;
        },
        TIMEOUT,
      );
      expect(back.candidate).toBeNull();
      for (let i = 0; i < 20; i++) {
        const res = await infer(client, i);
        expect(res.model_version).toBe("5.1.0");
        expect(res.parameters?.ab_arm).toBeUndefined();
      }
      const gone = await client.raw("GET", `/v2/models/${MODEL}/versions/5.2.0/ready`);
      expect(gone.status).not.toBe(200);
    },
    TIMEOUT,
  );
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import type { RolloutStatus } from "../../scripts/fleetctl/api-client.js";
import type { ReportedModel } from "../../shared/schemas/device-state.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { tinyInput } from "../helpers/tiny-models.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { expectedY, MODEL, pushTiny } from "./runtime-support.js";

/**
 * `abort` of a shadow rollout with real agents: the side candidate leaves every touched device
 * (its desired state is re-issued without it), the active version stays and keeps serving.
 */
const DEVICES = ["abort-a", "abort-b"];
const TIMEOUT = 5 * 60_000;
const X: [number, number, number, number] = [1, 2, 3, 4];

type DeviceView = { reported: { models: ReportedModel[] } | null };
type View = RolloutStatus & {
  history: { type: string; detail: Record<string, unknown> }[];
  devices: (RolloutStatus["devices"][number] & { rollback: { bundle: string | null } | null })[];
};

async function reportedModel(h: Harness, id: string): Promise<ReportedModel | null> {
  const dev = (await h.api.getDevice(id)) as DeviceView;
  return dev.reported?.models.find((m) => m.model === MODEL) ?? null;
}

describe("abort of a shadow rollout", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  const clients = new Map<string, SocketClient>();

  beforeAll(async () => {
    tmp = await makeTempDir("ef-rollout-abort-side-");
    h = await startHarness(tmp.path);
    for (const id of DEVICES) await h.startAgent(id, "generic-x64");
    await pushTiny(h, tmp.path, "1.0.0", "linear", 1);
    await pushTiny(h, tmp.path, "1.1.0", "linear", 2);
    const first = await h.api.createRollout({
      model: MODEL,
      version: "1.0.0",
      variant: "fp32",
      target: { deviceIds: DEVICES },
      healthPolicy: { probationSeconds: 1 },
    });
    const done = await h.api.waitForRollout(first.id, { timeoutMs: TIMEOUT, intervalMs: 500 });
    expect(done.status, JSON.stringify(done.devices)).toBe("completed");
    for (const id of DEVICES) clients.set(id, await waitForServing(h.agents.get(id)!, MODEL));
  }, TIMEOUT);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it(
    "removes the side version from every device; the active version stays and serves",
    async () => {
      const created = await h.api.createRollout({
        model: MODEL,
        version: "1.1.0",
        variant: "fp32",
        strategy: "shadow",
        target: { deviceIds: DEVICES },
        healthPolicy: { probationSeconds: 1 },
      });
      const before = new Map<string, ReportedModel>();
      for (const id of DEVICES) {
        const m = await waitFor(
          `${id}: shadow 1.1.0 running beside 1.0.0`,
          async () => {
            const r = await reportedModel(h, id);
            return r?.side?.state === "committed" && r.side.version === "1.1.0" ? r : null;
          },
          TIMEOUT,
        );
        expect(m).toMatchObject({ state: "committed", committed: { version: "1.0.0" }, side: { mode: "shadow" } });
        before.set(id, m);
        const pinned = await clients.get(id)!.raw("GET", `/v2/models/${MODEL}/versions/1.1.0/ready`);
        expect(pinned.status).toBe(200);
      }

      const aborted = (await h.api.rolloutCommand(created.id, "abort")) as View;
      expect(aborted.status).toBe("aborted");
      expect(aborted.history.find((e) => e.type === "aborted")?.detail).toMatchObject({
        by: "operator",
        sidesRemoved: 2,
      });
      // Each device's assignment of this rollout is marked removed (what a later rollback skips).
      expect(aborted.devices.map((d) => d.rollback)).toEqual([
        { bundle: null, state: "committed" },
        { bundle: null, state: "committed" },
      ]);

      for (const id of DEVICES) {
        const after = await waitFor(
          `${id}: side removed, 1.0.0 still committed`,
          async () => {
            const r = await reportedModel(h, id);
            return r && !r.side && r.state === "committed" ? r : null;
          },
          60_000,
        );
        // The active version was not touched: same bundle, no candidate, nothing re-installed.
        expect(after.committed).toEqual(before.get(id)!.committed);
        expect(after.candidate).toBeNull();
        const client = clients.get(id)!;
        const res = await client.inferTensors(MODEL, tinyInput(X));
        expect(res.model_version).toBe("1.0.0");
        expect(res.outputs[0]?.data).toEqual(expectedY(1, X));
        const gone = await client.raw("GET", `/v2/models/${MODEL}/versions/1.1.0/ready`);
        expect(gone.status).not.toBe(200);
      }

      // Nothing is left to undo: a rollback of the aborted rollout re-releases nothing.
      await h.api.rolloutCommand(created.id, "rollback");
      const final = (await h.api.waitForRollout(created.id, { timeoutMs: TIMEOUT, intervalMs: 500 })) as View;
      expect(final.status).toBe("rolled-back");
      expect(final.history.find((e) => e.type === "rolled-back")?.detail).toMatchObject({ reReleases: [] });
      for (const id of DEVICES) {
        expect((await reportedModel(h, id))?.committed).toEqual(before.get(id)!.committed);
      }
    },
    TIMEOUT,
  );
});

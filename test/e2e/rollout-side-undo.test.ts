import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import type { RolloutView } from "../../scripts/fleetctl/api-client.js";
import type { ReportedModel } from "../../shared/schemas/device-state.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { tinyInput } from "../helpers/tiny-models.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { expectedY, MODEL, pushTiny } from "./runtime-support.js";

/**
 * Undoing a shadow rollout that was never promoted, with real agents (one fleet, two tests in
 * order): `abort`, and `rollback`. Either way the side candidate leaves every touched device (its
 * desired state is re-issued without it); the devices never stopped running their previous
 * version, so it stays, keeps serving, and is neither re-released nor downloaded again.
 */
const DEVICES = ["undo-a", "undo-b"];
const TIMEOUT = 5 * 60_000;
const X: [number, number, number, number] = [1, 2, 3, 4];

type DeviceView = { reported: { models: ReportedModel[] } | null };
type View = RolloutView & {
  history: { type: string; detail: Record<string, unknown> }[];
  devices: (RolloutView["devices"][number] & { rollback: { bundle: string | null } | null })[];
  counts: RolloutView["counts"] & { removed?: number };
};
type StoredAssignment = { model: string; bundle: { sha256: string }; strategy: { mode: string } };

async function reportedModel(h: Harness, id: string): Promise<ReportedModel | null> {
  const dev = (await h.api.getDevice(id)) as DeviceView;
  return dev.reported?.models.find((m) => m.model === MODEL) ?? null;
}

/** The server's own record, read-only (WAL allows it while the server runs). */
function readServerDb(h: Harness) {
  const db = new Database(join(h.server.dataDir, "fleet.db"), { readonly: true, fileMustExist: true });
  try {
    const { n } = db.prepare("SELECT COUNT(*) AS n FROM re_releases").get() as { n: number };
    const rows = db.prepare("SELECT id, desired FROM devices").all() as { id: string; desired: string | null }[];
    const desired = new Map(
      rows.map((r) => [
        r.id,
        r.desired ? (JSON.parse(r.desired) as { signed: { assignments: StoredAssignment[] } }).signed.assignments : [],
      ]),
    );
    return { reReleases: n, desired };
  } finally {
    db.close();
  }
}

describe("undoing a shadow rollout that was not promoted", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  const clients = new Map<string, SocketClient>();

  beforeAll(async () => {
    tmp = await makeTempDir("ef-rollout-side-undo-");
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

  /** A shadow rollout of 1.1.0, once every device runs it beside 1.0.0; with what each reported then. */
  async function shadowEverywhere(): Promise<{ id: string; before: Map<string, ReportedModel> }> {
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
    return { id: created.id, before };
  }

  /** Every device dropped the side; its committed 1.0.0 is the very same bundle and still serves. */
  async function expectSideGone(before: Map<string, ReportedModel>, served?: Map<string, number>): Promise<void> {
    for (const id of DEVICES) {
      const after = await waitFor(
        `${id}: side removed, 1.0.0 still committed`,
        async () => {
          const r = await reportedModel(h, id);
          return r && !r.side && r.state === "committed" ? r : null;
        },
        60_000,
      );
      // Same bundle and release counter, no candidate: nothing re-installed.
      expect(after.committed).toEqual(before.get(id)!.committed);
      expect(after.candidate).toBeNull();
      const client = clients.get(id)!;
      const res = await client.inferTensors(MODEL, tinyInput(X));
      expect(res.model_version).toBe("1.0.0");
      expect(res.outputs[0]?.data).toEqual(expectedY(1, X));
      const gone = await client.raw("GET", `/v2/models/${MODEL}/versions/1.1.0/ready`);
      expect(gone.status).not.toBe(200);
      // Nothing was downloaded to undo it.
      if (served) expect(h.server.stats.chunkBytesServed(id)).toBe(served.get(id));
    }
  }

  it(
    "abort removes the side version from every device; the active version stays and serves",
    async () => {
      const { id, before } = await shadowEverywhere();
      const aborted = (await h.api.rolloutCommand(id, "abort")) as View;
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
      await expectSideGone(before);

      // Nothing is left to undo: a rollback of the aborted rollout re-releases nothing.
      await h.api.rolloutCommand(id, "rollback");
      const final = (await h.api.waitForRollout(id, { timeoutMs: TIMEOUT, intervalMs: 500 })) as View;
      expect(final.status).toBe("rolled-back");
      expect(final.history.find((e) => e.type === "rolled-back")?.detail).toMatchObject({ reReleases: [] });
      for (const dev of DEVICES) {
        expect((await reportedModel(h, dev))?.committed).toEqual(before.get(dev)!.committed);
      }
    },
    TIMEOUT,
  );

  it(
    "rollback removes the side version; the previous version keeps serving and is not re-released",
    async () => {
      const { id, before } = await shadowEverywhere();
      const served = new Map(DEVICES.map((dev) => [dev, h.server.stats.chunkBytesServed(dev)]));

      const rolled = (await h.api.rolloutCommand(id, "rollback")) as View;
      expect(rolled.status).toBe("rolled-back");
      expect(rolled.history.find((e) => e.type === "rolled-back")?.detail).toMatchObject({
        sidesRemoved: 2,
        reReleases: [],
      });
      // Marked like an abort's removal: nothing for the device to install, nothing left to undo.
      expect(rolled.devices.map((d) => d.rollback)).toEqual([
        { bundle: null, state: "committed" },
        { bundle: null, state: "committed" },
      ]);

      // No new release of 1.0.0 exists, and each device's desired state is its 1.0.0 bundle alone.
      const db = readServerDb(h);
      expect(db.reReleases).toBe(0);
      for (const dev of DEVICES) {
        const mine = db.desired.get(dev)!.filter((a) => a.model === MODEL);
        expect(mine.map((a) => [a.bundle.sha256, a.strategy.mode])).toEqual([
          [before.get(dev)!.committed!.sha256, "active"],
        ]);
      }
      await expectSideGone(before, served);

      // Once the devices dropped the side, the view says so instead of `pending`.
      const view = (await h.api.getRollout(id)) as View;
      expect(view.status).toBe("rolled-back");
      expect(view.devices.map((d) => d.state)).toEqual(["removed", "removed"]);
      expect(view.counts).toMatchObject({ total: 2, removed: 2, pending: 0, failed: 0 });
    },
    TIMEOUT,
  );
});

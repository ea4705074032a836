import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CreateRolloutBody } from "../../scripts/fleetctl/api-client.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness } from "./fleet-harness.js";

/**
 * The rollout API without agents: bad definitions are refused with a precise 400 before
 * anything is stored or published; supersede and the operator commands follow their rules.
 */
const DEVICES = ["api-a", "api-b", "api-c"];
const base: CreateRolloutBody = { model: "silero-vad", version: "5.0.0", target: { tags: { ring: "api" } } };

describe("rollout API", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-rollout-api-");
    h = await startHarness(tmp.path);
    for (const id of DEVICES) await h.api.enrollDevice({ id, profile: "generic-x64", tags: { ring: "api" } });
    await h.pushSilero("5.0.0");
  }, 120_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it.each([
    [
      "percents out of order",
      { stages: [{ percent: 50 }, { percent: 10 }] },
      "body.stages[1].percent: stage percents must increase: 10 follows 50",
    ],
    ["an unknown model", { model: "nope" }, "model nope version 5.0.0 is not in the registry"],
    ["an unknown version", { version: "9.9.9" }, "model silero-vad version 9.9.9 is not in the registry"],
    ["an empty selector", { target: {} }, "body.target: selector is empty: give deviceIds, tags or profiles"],
    ["a selector that matches nothing", { target: { profiles: ["no-such-profile"] } }, "target matches no devices"],
    ["unknown device ids", { target: { deviceIds: ["api-a", "ghost"] } }, "unknown device(s): ghost"],
    [
      "an invalid cron",
      { maintenanceWindow: { cron: "61 * * * *", durationMinutes: 30 } },
      "body.maintenanceWindow.cron: not a valid node-cron expression",
    ],
    [
      "an unknown time zone",
      { maintenanceWindow: { cron: "0 2 * * *", durationMinutes: 30, timeZone: "Mars/Olympus" } },
      "body.maintenanceWindow.timeZone: unknown IANA time zone",
    ],
    [
      "minDevices above the matched devices",
      { stages: [{ percent: 100, gates: { minDevices: 4 } }] },
      "stages[0].gates.minDevices 4 can never be met: stage 1 (100%) covers 3 of the 3 matched device(s)",
    ],
    [
      "minDevices above a stage's share",
      { stages: [{ percent: 30, gates: { minDevices: 2 } }, { percent: 100 }] },
      "stages[0].gates.minDevices 2 can never be met: stage 1 (30%) covers 1 of the 3 matched device(s)",
    ],
    [
      "a shadow-agreement gate outside shadow",
      { stages: [{ percent: 100, gates: { minShadowAgreementPercent: 99 } }] },
      "minShadowAgreementPercent can only pass with the shadow strategy",
    ],
    [
      "a probation deadline shorter than probation",
      { healthPolicy: { probationSeconds: 60 }, deadlines: { probationSeconds: 30 } },
      "probation deadline 30s must exceed healthPolicy.probationSeconds 60s",
    ],
  ] as const)("refuses %s with 400 and publishes nothing", async (_what, patch, message) => {
    const body = { ...base, ...patch } as CreateRolloutBody;
    const err = await h.api.createRollout(body).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ status: 400, code: "VALIDATION_FAILED", message: expect.stringContaining(message) });
    expect((await h.api.listRollouts()).rollouts).toEqual([]);
  });

  it("stored and published nothing for any refused definition", async () => {
    expect((await h.api.listRollouts()).rollouts).toEqual([]);
    for (const id of DEVICES) {
      const dev = (await h.api.getDevice(id)) as { desiredSeq: number };
      expect(dev.desiredSeq, id).toBe(0);
    }
  });

  it("one active rollout per model per device: a newer one must name the older in supersedes", async () => {
    const first = await h.api.createRollout({ ...base, supersedes: [] });
    expect(first.status).toBe("running");
    await expect(h.api.createRollout(base)).rejects.toMatchObject({
      status: 409,
      code: "CONFLICT",
      message: expect.stringContaining(`rollout ${first.id} (running) already rolls out silero-vad`),
    });
    const second = await h.api.createRollout({ ...base, supersedes: [first.id] });
    expect(second.counts.total).toBe(3);
    expect((await h.api.getRollout(first.id)).status).toBe("superseded");
    expect((await h.api.getRollout(first.id)).reason).toBe(`superseded by ${second.id}`);
  });

  it("pause, resume, promote and abort follow the status; invalid commands are 409", async () => {
    const { rollouts } = await h.api.listRollouts();
    const id = rollouts.find((r) => r.status === "running")!.id;
    await expect(h.api.rolloutCommand(id, "resume")).rejects.toMatchObject({ status: 409, code: "CONFLICT" });
    expect((await h.api.rolloutCommand(id, "pause")).status).toBe("paused");
    expect((await h.api.rolloutCommand(id, "resume")).status).toBe("running");
    const promoted = await h.api.rolloutCommand(id, "promote");
    expect(promoted.history?.map((e) => e.type)).toContain("promoted");
    expect((await h.api.rolloutCommand(id, "abort")).status).toBe("aborted");
    await expect(h.api.rolloutCommand(id, "pause")).rejects.toMatchObject({ status: 409 });
    await expect(h.api.rolloutCommand("r-missing", "pause")).rejects.toMatchObject({ status: 404 });
  });
});

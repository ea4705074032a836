import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/agent-process.js";
import { buildValidBundle } from "./bundles.js";
import { deviceStatus, expectUnchanged, PROFILE, type SecuredDevice, startSecuredDevice } from "./device.js";

/**
 * Freeze / clock attacks (issue 7, TUF "freeze"): the device's clock is moved forward by 400 days
 * (the agent is restarted with EDGEFLEET_FAULT_CLOCK_OFFSET_MS). A desired state that is fresh by the
 * server's clock is stale by the device's, so it must be refused as EXPIRED — and the device must go
 * on serving what it committed, from disk, with its state untouched.
 */
const DAY = 24 * 3600 * 1000;

describe("security: a device whose clock jumped forward", () => {
  let d: SecuredDevice;

  beforeAll(async () => {
    d = await startSecuredDevice("sec-clock");
    await d.agent.kill("SIGTERM");
    d.agent = await d.adv.startAgent(PROFILE, { env: { EDGEFLEET_FAULT_CLOCK_OFFSET_MS: String(400 * DAY) } });
    await waitFor(
      "the skewed agent serving again",
      async () => (await d.socket.raw("GET", "/v2/health/ready")).status === 200,
    );
  });

  afterAll(async () => {
    await d?.close();
  });

  it("keeps serving its committed model after the jump (nothing about the commit depends on the clock)", async () => {
    expect(d.agent.logs()).toContain("clock is shifted");
    await expectUnchanged(d, { lastDesiredSeq: 1 });
  });

  it("refuses a desired state that is fresh for the server but expired for it → EXPIRED, state unchanged", async () => {
    const bundle = await buildValidBundle(
      d.adv.dir,
      d.silero,
      { version: "5.9.0", releaseCounter: 3 },
      d.adv.keys.release,
    );
    d.adv.serve(bundle);
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const doc = d.adv.desired([bundle], { issuedAt: new Date(), expires: new Date(Date.now() + 30 * DAY) });
    await d.adv.publishDesired(doc);
    const outcome = await d.adv.desiredOutcome(doc.signed.seq);
    if (outcome === "accepted")
      throw new Error("AGENT BUG: a desired state expired by the device's clock was accepted");
    expect(outcome.error?.code).toBe("EXPIRED");
    await expectUnchanged(d, { lastDesiredSeq: before });
    expect(d.adv.chunkRequests(bundle.sha256)).toBe(0);
  });
});

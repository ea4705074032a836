import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../../shared/trust/keys.js";
import type { SeenEvent } from "./adversary.js";
import { buildValidBundle, type ReleaseInfo, type ServedBundle } from "./bundles.js";
import { deviceStatus, expectUnchanged, type SecuredDevice, startSecuredDevice } from "./device.js";

/**
 * Attacks on the desired-state document itself (architecture.md §3). Each one points at a real, valid,
 * served bundle that the device *would* install if it accepted the document, so "state unchanged"
 * means something: the device must refuse the document, report the reason on `events`, keep
 * `lastDesiredSeq`, never ask for a single chunk of the bundle, and keep serving 5.0.0.
 */
describe("security: the agent refuses desired states it must not trust", () => {
  let d: SecuredDevice;

  beforeAll(async () => {
    d = await startSecuredDevice("sec-trust");
  });

  afterAll(async () => {
    await d?.close();
  });

  /** A valid release the attack tries to push, served by the adversary (release-signed unless told). */
  async function lure(release: ReleaseInfo, signer = d.adv.keys.release): Promise<ServedBundle> {
    const bundle = await buildValidBundle(d.adv.dir, d.silero, release, signer);
    d.adv.serve(bundle);
    return bundle;
  }

  /** Publishes `doc` (whose seq is `seq`) and returns the device's rejection event; fails if it accepts. */
  async function rejectionOf(doc: unknown, seq: number): Promise<SeenEvent> {
    await d.adv.publishDesired(doc);
    const outcome = await d.adv.desiredOutcome(seq);
    if (outcome === "accepted") throw new Error(`AGENT BUG: desired seq ${seq} was accepted`);
    return outcome;
  }

  async function expectRefused(bundle: ServedBundle, lastDesiredSeq: number): Promise<void> {
    await expectUnchanged(d, { lastDesiredSeq });
    expect(d.adv.chunkRequests(bundle.sha256)).toBe(0);
  }

  it("2. a desired state signed by an unknown key → SIGNATURE_THRESHOLD_NOT_MET", async () => {
    const bundle = await lure({ version: "5.1.0", releaseCounter: 3 });
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const doc = d.adv.desired([bundle], { signers: [generateKeyPair()] });
    const ev = await rejectionOf(doc, doc.signed.seq);
    expect(ev.error?.code).toBe("SIGNATURE_THRESHOLD_NOT_MET");
    expect(ev.error?.message).toMatch(/director/);
    await expectRefused(bundle, before);
  });

  it("2b. an unknown key's signature relabelled with the director's key id → SIGNATURE_THRESHOLD_NOT_MET", async () => {
    const bundle = await lure({ version: "5.1.1", releaseCounter: 3 });
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const doc = d.adv.desired([bundle], { signers: [generateKeyPair()] });
    const forged = { ...doc, signatures: doc.signatures.map((s) => ({ ...s, keyid: d.adv.keys.director.keyid })) };
    const ev = await rejectionOf(forged, doc.signed.seq);
    expect(ev.error?.code).toBe("SIGNATURE_THRESHOLD_NOT_MET");
    await expectRefused(bundle, before);
  });

  it("2c. a director-signed desired state altered after signing (bundle swapped) → SIGNATURE_THRESHOLD_NOT_MET", async () => {
    const honest = await lure({ version: "5.1.2", releaseCounter: 3 });
    const evil = await lure({ version: "5.1.3", releaseCounter: 3 });
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const doc = d.adv.desired([honest]);
    const altered = d.adv.desired([evil], { seq: doc.signed.seq, signers: [] });
    const ev = await rejectionOf({ signed: altered.signed, signatures: doc.signatures }, doc.signed.seq);
    expect(ev.error?.code).toBe("SIGNATURE_THRESHOLD_NOT_MET");
    await expectRefused(evil, before);
    expect(d.adv.chunkRequests(honest.sha256)).toBe(0);
  });

  it("3. a validly signed desired state for another device, on this device's topic → WRONG_DEVICE", async () => {
    const bundle = await lure({ version: "5.2.0", releaseCounter: 3 });
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const doc = d.adv.desired([bundle], { deviceId: "sec-someone-else" });
    const ev = await rejectionOf(doc, doc.signed.seq);
    expect(ev.error?.code).toBe("WRONG_DEVICE");
    await expectRefused(bundle, before);
  });

  it("4. an older, validly signed desired state re-published after a newer one → SEQ_REPLAYED", async () => {
    // Make sure the replayed document is not the last accepted one (that would be a harmless re-delivery).
    const newer = d.adv.desired([d.committed]);
    await d.adv.publishDesired(newer);
    expect(await d.adv.desiredOutcome(newer.signed.seq)).toBe("accepted");
    const before = (await deviceStatus(d)).lastDesiredSeq;
    expect(before).toBe(newer.signed.seq);

    const replayedSeq = d.initialDesired.signed.seq;
    const already = d.adv.events.length;
    await d.adv.publishDesired(d.initialDesired);
    const ev = await d.adv.waitForEvent(
      `the rejection of replayed seq ${replayedSeq}`,
      (e) => d.adv.events.indexOf(e) >= already && e.type === "desired.rejected" && e.seq === replayedSeq,
      30_000,
    );
    expect(ev.error?.code).toBe("SEQ_REPLAYED");
    await expectUnchanged(d, { lastDesiredSeq: before });
  });

  it("4b. a new, validly signed document reusing the last accepted seq → SEQ_REPLAYED", async () => {
    const bundle = await lure({ version: "5.2.1", releaseCounter: 3 });
    const before = (await deviceStatus(d)).lastDesiredSeq;
    expect(before).toBeGreaterThan(0);
    const doc = d.adv.desired([bundle], { seq: before });
    const already = d.adv.events.length;
    await d.adv.publishDesired(doc);
    const ev = await d.adv.waitForEvent(
      `the rejection of reused seq ${before}`,
      (e) => d.adv.events.indexOf(e) >= already && e.type === "desired.rejected" && e.seq === before,
      30_000,
    );
    expect(ev.error?.code).toBe("SEQ_REPLAYED");
    await expectRefused(bundle, before);
  });

  it("5. an expired desired state → EXPIRED", async () => {
    const bundle = await lure({ version: "5.3.0", releaseCounter: 3 });
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const hour = 3600_000;
    const doc = d.adv.desired([bundle], {
      issuedAt: new Date(Date.now() - 2 * hour),
      expires: new Date(Date.now() - hour),
    });
    const ev = await rejectionOf(doc, doc.signed.seq);
    expect(ev.error?.code).toBe("EXPIRED");
    await expectRefused(bundle, before);
  });

  it("11. a bundle manifest signed by the director instead of the release role → SIGNATURE_THRESHOLD_NOT_MET", async () => {
    const bundle = await lure({ version: "5.4.0", releaseCounter: 3 }, d.adv.keys.director);
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const doc = d.adv.desired([bundle]);
    const ev = await rejectionOf(doc, doc.signed.seq);
    expect(ev.error?.code).toBe("SIGNATURE_THRESHOLD_NOT_MET");
    expect(ev.error?.message).toMatch(/manifest.*release/);
    await expectRefused(bundle, before);
  });

  it("11b. a release manifest whose signed lineage was altered afterwards (issue 21) → SIGNATURE_THRESHOLD_NOT_MET", async () => {
    const lineage = {
      trainingData: { version: "2026-11", hash: "sha256:abc" },
      code: { repository: "git@example.com:vad.git", commit: "0123abc" },
      metrics: { accuracy: 0.91 },
      labels: { team: "audio" },
    };
    const bundle = await buildValidBundle(
      d.adv.dir,
      d.silero,
      { version: "5.4.1", releaseCounter: 3 },
      d.adv.keys.release,
      {
        lineage,
      },
    );
    d.adv.serve(bundle);
    const before = (await deviceStatus(d)).lastDesiredSeq;
    // The same envelope with a better accuracy claimed: the release signature no longer covers it.
    const forged = {
      ...bundle,
      manifest: {
        ...bundle.manifest,
        signed: { ...bundle.manifest.signed, lineage: { ...lineage, metrics: { accuracy: 0.99 } } },
      },
    };
    const doc = d.adv.desired([forged]);
    const ev = await rejectionOf(doc, doc.signed.seq);
    expect(ev.error?.code).toBe("SIGNATURE_THRESHOLD_NOT_MET");
    expect(ev.error?.message).toMatch(/manifest/);
    await expectRefused(bundle, before);
  });

  it("12. a release whose counter is lower than the installed one → RELEASE_COUNTER_ROLLBACK", async () => {
    const bundle = await lure({ version: "4.9.0", releaseCounter: 1 });
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const doc = d.adv.desired([bundle]);
    const ev = await rejectionOf(doc, doc.signed.seq);
    expect(ev.error?.code).toBe("RELEASE_COUNTER_ROLLBACK");
    await expectRefused(bundle, before);
  });

  it("13. a desired payload that is not JSON, or over the 4 MiB cap → desired.rejected (issue 20 §5), not only a log line", async () => {
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const cases = [
      { payload: Buffer.from("{not json"), code: "VALIDATION_FAILED" },
      { payload: Buffer.alloc(4 * 1024 * 1024 + 1, 0x20), code: "PAYLOAD_TOO_LARGE" },
    ];
    for (const c of cases) {
      const already = d.adv.events.length;
      await d.adv.publishDesired(c.payload);
      const ev = await d.adv.waitForEvent(
        `desired.rejected ${c.code}`,
        (e) => d.adv.events.indexOf(e) >= already && e.type === "desired.rejected",
      );
      expect(ev).toMatchObject({ seq: null, error: { code: c.code } });
    }
    await expectUnchanged(d, { lastDesiredSeq: before });
  });
});

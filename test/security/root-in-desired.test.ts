import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Envelope } from "../../shared/schemas/trust.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import { generateKeyPair } from "../../shared/trust/keys.js";
import { nextRoot } from "../../shared/trust/root-edit.js";
import { deviceStatus, expectUnchanged, type SecuredDevice, startSecuredDevice } from "./device.js";

/**
 * The root chain riding beside a desired state (issue 7: "root chain distributed on the retained
 * trust topic and in desired state"). Nothing is published on the trust topic here: a device that
 * missed it must still learn a valid rotation from the desired state itself — and must not let a
 * chain that does not authenticate smuggle in a new director.
 */
describe("security: root chain inside the desired state", () => {
  let d: SecuredDevice;
  const inADay = () => new Date(Date.now() + 24 * 3600_000);
  const withChain = <T>(doc: Envelope<T>, rootChain: unknown[]) => ({ ...doc, rootChain });

  beforeAll(async () => {
    d = await startSecuredDevice("sec-rootdesired");
  });

  afterAll(async () => {
    await d?.close();
  });

  it("a chain whose new root is signed only by the new keys does not make a rogue director count", async () => {
    const rogueRoot = generateKeyPair();
    const rogueDirector = generateKeyPair();
    const v2 = nextRoot(d.adv.signedRoot.signed, { role: "director", keys: [rogueDirector], threshold: 1 }, inADay());
    const forged = signEnvelope(
      {
        ...v2,
        roles: { ...v2.roles, root: { keyids: [rogueRoot.keyid], threshold: 1 } },
        keys: { ...v2.keys, [rogueRoot.keyid]: rogueRoot.publicKey },
      },
      [rogueRoot],
    );
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const doc = d.adv.desired([d.committed], { signers: [rogueDirector] });
    await d.adv.publishDesired(withChain(doc, [d.adv.signedRoot, forged]));
    const outcome = await d.adv.desiredOutcome(doc.signed.seq);
    if (outcome === "accepted") throw new Error("AGENT BUG: a director from an unauthenticated root was trusted");
    expect(outcome.error?.code).toBe("SIGNATURE_THRESHOLD_NOT_MET");
    expect(d.agent.logs()).toContain("root chain rejected");
    await expectUnchanged(d, { lastDesiredSeq: before });
  });

  it("a valid rotation carried only in the desired state is followed: the new director's document is accepted", async () => {
    const newDirector = generateKeyPair();
    const v2 = signEnvelope(
      nextRoot(d.adv.signedRoot.signed, { role: "director", keys: [newDirector], threshold: 1 }, inADay()),
      [d.adv.keys.root],
    );
    const doc = d.adv.desired([d.committed], { signers: [newDirector] });
    await d.adv.publishDesired(withChain(doc, [d.adv.signedRoot, v2]));
    expect(await d.adv.desiredOutcome(doc.signed.seq)).toBe("accepted");
    expect(d.agent.logs()).toContain("trusted root rotated");
    await expectUnchanged(d, { lastDesiredSeq: doc.signed.seq });

    // The old director no longer counts under root v2.
    const stale = d.adv.desired([d.committed], { signers: [d.adv.keys.director] });
    await d.adv.publishDesired(stale);
    const outcome = await d.adv.desiredOutcome(stale.signed.seq);
    if (outcome === "accepted") throw new Error("AGENT BUG: the rotated-out director still counts");
    expect(outcome.error?.code).toBe("SIGNATURE_THRESHOLD_NOT_MET");
    await expectUnchanged(d, { lastDesiredSeq: doc.signed.seq });
  });
});

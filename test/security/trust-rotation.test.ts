import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Envelope, Root } from "../../shared/schemas/trust.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import { generateKeyPair, type KeyPair } from "../../shared/trust/keys.js";
import { nextRoot } from "../../shared/trust/root-edit.js";
import { waitFor } from "../helpers/agent-process.js";
import type { SeenEvent } from "./adversary.js";
import { deviceStatus, expectUnchanged, type SecuredDevice, startSecuredDevice } from "./device.js";

/**
 * Root rotation, thresholds and freeze (architecture.md §3, TUF 5.3). The adversary publishes root chains on
 * the retained trust topic; the device must only move to a root signed by a threshold of the old
 * *and* the new root keys, count each key id once, accept a threshold with junk beside it, and stop
 * accepting anything once its trusted root has expired. Every case ends with the committed model
 * serving and the device's state unchanged. Cases run in order: the later ones build on rotations.
 */
describe("security: root rotation, thresholds and freeze", () => {
  let d: SecuredDevice;
  const HOUR = 3600_000;
  const inADay = () => new Date(Date.now() + 24 * HOUR);
  /** What the device should trust after each accepted step. */
  let chain: Envelope<Root>[];
  let directors: KeyPair[];
  let rootKeys: KeyPair[];

  beforeAll(async () => {
    d = await startSecuredDevice("sec-rotation");
    chain = [d.adv.signedRoot];
    directors = [d.adv.keys.director];
    rootKeys = [d.adv.keys.root];
  });

  afterAll(async () => {
    await d?.close();
  });

  const logCount = (msg: string) =>
    d.agent
      .logs()
      .split("\n")
      .filter((l) => l.includes(`"msg":"${msg}"`)).length;

  /** Publishes a chain and waits for the device's verdict on it (from its log). */
  async function publishChain(next: readonly Envelope<Root>[]): Promise<"rotated" | "rejected"> {
    const rotated = logCount("trusted root rotated");
    const rejected = logCount("root chain rejected");
    await d.adv.publishRootChain(next);
    return waitFor(
      "the device's verdict on the root chain",
      async () =>
        logCount("trusted root rotated") > rotated
          ? "rotated"
          : logCount("root chain rejected") > rejected
            ? "rejected"
            : null,
      30_000,
    ) as Promise<"rotated" | "rejected">;
  }

  /** A desired state re-assigning the committed bundle, signed by `signers` (or a raw signature list). */
  function desiredBy(signers: KeyPair[]) {
    return d.adv.desired([d.committed], { signers });
  }

  async function verdict(doc: Envelope<{ seq: number }>): Promise<SeenEvent | "accepted"> {
    await d.adv.publishDesired(doc);
    return d.adv.desiredOutcome(doc.signed.seq);
  }

  async function expectRejected(doc: Envelope<{ seq: number }>, code: string): Promise<void> {
    const before = (await deviceStatus(d)).lastDesiredSeq;
    const v = await verdict(doc);
    if (v === "accepted") throw new Error(`AGENT BUG: desired seq ${doc.signed.seq} accepted`);
    expect(v.error?.code).toBe(code);
    await expectUnchanged(d, { lastDesiredSeq: before });
  }

  function rotation(change: Parameters<typeof nextRoot>[1], signers: KeyPair[], expires = inADay()): Envelope<Root> {
    return signEnvelope(nextRoot(chain.at(-1)!.signed, change, expires), signers);
  }

  it("a root rotation signed only by the new root keys is refused", async () => {
    const newRoot = generateKeyPair();
    const newDirector = generateKeyPair();
    const withRoot = nextRoot(chain[0]!.signed, { role: "root", keys: [newRoot], threshold: 1 }, inADay());
    const both = nextRoot(withRoot, { role: "director", keys: [newDirector], threshold: 1 }, inADay());
    // Two edits bump the version twice; the attack claims to be exactly v2.
    const v2fixed = signEnvelope({ ...both, version: 2 }, [newRoot]);
    expect(await publishChain([...chain, v2fixed])).toBe("rejected");
    await expectRejected(desiredBy([newDirector]), "SIGNATURE_THRESHOLD_NOT_MET");
  });

  it("a root rotation signed only by the old root keys is refused", async () => {
    const newRoot = generateKeyPair();
    const v2 = rotation({ role: "root", keys: [newRoot], threshold: 1 }, rootKeys);
    expect(await publishChain([...chain, v2])).toBe("rejected");
    // Still on v1: the old director key is the one that counts.
    const ok = desiredBy(directors);
    expect(await verdict(ok)).toBe("accepted");
    await expectUnchanged(d, { lastDesiredSeq: ok.signed.seq });
  });

  it("a valid rotation (old and new root keys) to a 2-of-2 director role is followed", async () => {
    const newRoot = generateKeyPair();
    const v2 = rotation({ role: "root", keys: [newRoot], threshold: 1 }, [...rootKeys, newRoot]);
    const d1 = generateKeyPair();
    const d2 = generateKeyPair();
    const v3 = signEnvelope(nextRoot(v2.signed, { role: "director", keys: [d1, d2], threshold: 2 }, inADay()), [
      newRoot,
    ]);
    expect(await publishChain([...chain, v2, v3])).toBe("rotated");
    chain = [...chain, v2, v3];
    rootKeys = [newRoot];
    const oldDirectors = directors;
    directors = [d1, d2];
    // The old director alone no longer counts.
    await expectRejected(desiredBy(oldDirectors), "SIGNATURE_THRESHOLD_NOT_MET");
    const ok = desiredBy(directors);
    expect(await verdict(ok)).toBe("accepted");
    await expectUnchanged(d, { lastDesiredSeq: ok.signed.seq });
  });

  it("duplicate signatures by one key do not reach a threshold of 2", async () => {
    const [d1] = directors;
    const doc = desiredBy([d1!]);
    const dup = { ...doc, signatures: [doc.signatures[0]!, doc.signatures[0]!, { ...doc.signatures[0]! }] };
    await expectRejected(dup, "SIGNATURE_THRESHOLD_NOT_MET");
  });

  it("one key's signature relabelled with the other key's id does not count twice", async () => {
    const [d1, d2] = directors;
    const doc = desiredBy([d1!]);
    const relabelled = { ...doc, signatures: [doc.signatures[0]!, { keyid: d2!.keyid, sig: doc.signatures[0]!.sig }] };
    await expectRejected(relabelled, "SIGNATURE_THRESHOLD_NOT_MET");
  });

  it("a root rotation whose threshold is met only by duplicate key ids is refused", async () => {
    // Raise the root threshold to 2 of [r1, r2]; sign with the current key and r1 twice.
    const r1 = generateKeyPair();
    const r2 = generateKeyPair();
    const next = nextRoot(chain.at(-1)!.signed, { role: "root", keys: [r1, r2], threshold: 2 }, inADay());
    const env = signEnvelope(next, [...rootKeys, r1]);
    const r1sig = env.signatures.find((s) => s.keyid === r1.keyid)!;
    const dup = { signed: env.signed, signatures: [...env.signatures, r1sig, { ...r1sig }] };
    expect(await publishChain([...chain, dup])).toBe("rejected");
    await expectRejected(desiredBy(directors.slice(0, 1)), "SIGNATURE_THRESHOLD_NOT_MET");
  });

  it("a garbage extra signature beside a valid threshold is accepted", async () => {
    const doc = desiredBy(directors);
    const junk = [
      { keyid: generateKeyPair().keyid, sig: "ab".repeat(64) },
      { keyid: directors[0]!.keyid, sig: "00".repeat(64) },
    ];
    expect(await verdict({ ...doc, signatures: [...junk, ...doc.signatures] })).toBe("accepted");
    await expectUnchanged(d, { lastDesiredSeq: doc.signed.seq });
  });

  it("an oversize or over-long root chain is refused", async () => {
    const huge = Buffer.alloc(2 * 1024 * 1024, 0x20);
    const rejected = logCount("root chain rejected");
    await d.adv.publishRootChain(huge);
    await waitFor("the oversize chain's rejection", async () => logCount("root chain rejected") > rejected, 30_000);
    const long = Array.from({ length: 40 }, () => chain.at(-1)!);
    expect(await publishChain(long)).toBe("rejected");
    await expectRejected(desiredBy(directors.slice(0, 1)), "SIGNATURE_THRESHOLD_NOT_MET");
  });

  // Last: after this the device trusts an expired root and accepts nothing new.
  it("freeze: a validly rotated but expired root makes the device refuse every new desired state", async () => {
    const v = rotation({ role: "director", keys: directors, threshold: 2 }, rootKeys, new Date(Date.now() - HOUR));
    expect(await publishChain([...chain, v])).toBe("rotated");
    const doc = desiredBy(directors);
    await expectRejected(doc, "EXPIRED");
  });
});

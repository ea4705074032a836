import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { MODEL, pushTiny } from "./runtime-support.js";

/**
 * Issue 22, "accuracy gates with a real test", end to end: two real agents join ground truth to
 * their predictions, report the counts in `reported` (every second here), and the fleet server's
 * accuracy gate pools them per stage against the version each device ran before. The labels are
 * chosen from each answer so the accuracy is exact (every tenth wrong = 90 %), which makes the
 * verdicts deterministic: an equal candidate passes, one at 60 % is stopped.
 */
const AGENTS = ["acc-a", "acc-b"];
const PER_AGENT = 100;
const argmax = (v: number[]) => v.reduce((best, x, i) => (x > v[best]! ? i : best), 0);

describe("e2e: the accuracy gate judges a rollout from the devices' joined feedback (issue 22)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  const clients = new Map<string, SocketClient>();

  /** `PER_AGENT` predictions with ids on every agent, then their labels: the i-th wrong when `wrong(i)`. */
  const predictAndLabel = async (tag: string, wrong: (i: number) => boolean) => {
    for (const id of AGENTS) {
      const c = clients.get(id)!;
      const labels: { id: string; label: number }[] = [];
      for (let i = 0; i < PER_AGENT; i++) {
        const rid = `${tag}-${id}-${i}`;
        const res = await c.infer(
          MODEL,
          [{ name: "x", datatype: "FP32", shape: [1, 4], data: [i % 7, 1, (i * 3) % 5, 2] }],
          {
            id: rid,
          },
        );
        const predicted = argmax(res.outputs[0]!.data as number[]);
        labels.push({ id: rid, label: wrong(i) ? (predicted + 1) % 4 : predicted });
      }
      const answer = await c.json<{ results: { status: string }[] }>("POST", `/v2/models/${MODEL}/feedback`, {
        feedback: labels,
      });
      expect(answer.results.every((r) => r.status === "correct" || r.status === "wrong")).toBe(true);
    }
  };
  /** Every agent committed `version` (the gate waits for feedback after the devices settle). */
  const committedEverywhere = (version: string) =>
    waitFor(`${version} committed on every agent`, async () => {
      for (const id of AGENTS) {
        const m = (await h.api.getDevice(id)).reported?.models.find((x) => x.model === MODEL);
        if (m?.committed?.version !== version || m.state !== "committed") return false;
      }
      return true;
    });
  const gated = (version: string) =>
    h.api.createRollout({
      model: MODEL,
      version,
      variant: "fp32",
      target: { tags: { suite: "e2e" } },
      stages: [{ percent: 100, gates: { accuracy: { maxDropPercent: 10, minSamples: 2 * PER_AGENT } } }],
      healthPolicy: { probationSeconds: 1 },
    });

  beforeAll(async () => {
    tmp = await makeTempDir("ef-acc-");
    h = await startHarness(tmp.path);
    await Promise.all([
      ...AGENTS.map((id) => h.startAgent(id, "generic-x64", { feedback: { reportSeconds: 1 } })),
      pushTiny(h, tmp.path, "1.0.0", "linear", 1),
    ]);
    const first = await h.api.createRollout({
      model: MODEL,
      version: "1.0.0",
      variant: "fp32",
      target: { tags: { suite: "e2e" } },
      healthPolicy: { probationSeconds: 1 },
    });
    expect((await h.api.waitForRollout(first.id, { timeoutMs: 90_000 })).status).toBe("completed");
    for (const id of AGENTS) clients.set(id, await waitForServing(h.agents.get(id)!, MODEL));
    // The baseline: 1.0.0 right 90 % of the time on both devices.
    await predictAndLabel("v1", (i) => i % 10 === 0);
  }, 120_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("an equally accurate candidate passes at the one look and the rollout completes", async () => {
    await pushTiny(h, tmp.path, "2.0.0", "linear", 2);
    const r = await gated("2.0.0");
    await committedEverywhere("2.0.0");
    // Settled but no feedback for 2.0.0 yet: the gate waits, it does not pass on no data.
    const before = await h.api.getRollout(r.id);
    expect(before.status).toBe("running");
    await predictAndLabel("v2", (i) => i % 10 === 0);
    const done = await h.api.waitForRollout(r.id, { timeoutMs: 60_000 });
    expect(done.status).toBe("completed");
    const view = await h.api.getRollout(r.id);
    expect(view.gates.accuracy).toMatchObject({
      verdict: "pass",
      decided: true,
      candidate: { n: 2 * PER_AGENT, accuracy: 0.9 },
      baseline: { n: 2 * PER_AGENT, accuracy: 0.9 },
    });
    expect(view.history.find((e) => e.type === "accuracy-decided")).toMatchObject({ detail: { verdict: "pass" } });
  }, 120_000);

  it("a candidate 30 points worse is stopped by the gate, with the figures in its reason", async () => {
    await pushTiny(h, tmp.path, "3.0.0", "linear", 3);
    const r = await gated("3.0.0");
    await committedEverywhere("3.0.0");
    await predictAndLabel("v3", (i) => i % 5 < 2);
    const stopped = await h.api.waitForRollout(r.id, { timeoutMs: 60_000, until: (x) => x.status === "paused" });
    expect(stopped.status).toBe("paused");
    const view = await h.api.getRollout(r.id);
    expect(view.reason).toMatch(/accuracy: candidate not shown within 10 points/);
    expect(view.gates.accuracy).toMatchObject({ verdict: "fail", candidate: { n: 2 * PER_AGENT, accuracy: 0.6 } });
  }, 120_000);
});

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import type { FeedbackSummary } from "../../shared/http/models.js";
import { waitFor } from "../helpers/agent-process.js";
import { memo } from "../helpers/memo.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { MODEL, pushTiny } from "./runtime-support.js";
import { serverGet } from "./telemetry-support.js";

/**
 * Issue 22 end to end: the accuracy gate, the fleet's feedback view and a bandit A/B split.
 * "Accuracy gates with a real test": two real agents join ground truth to
 * their predictions, report the counts in `reported` (every second here), and the fleet server's
 * accuracy gate pools them per stage against the version each device ran before. The labels are
 * chosen from each answer so the accuracy is exact (every tenth wrong = 90 %), which makes the
 * verdicts deterministic: an equal candidate passes, one at 60 % is stopped.
 */
const AGENTS = ["acc-a", "acc-b"];
const FLEETCTL = fileURLToPath(new URL("../../bin/fleetctl.js", import.meta.url));
/** fleetctl as a real process with the server's admin token; its stdout. */
const fleetctl = async (h: Harness, args: string[]) =>
  (
    await promisify(execFile)(process.execPath, [FLEETCTL, "--server", h.server.httpUrl, ...args], {
      env: { ...process.env, EDGEFLEET_TOKEN: h.server.adminToken },
    })
  ).stdout;
const PER_AGENT = 100;
const argmax = (v: number[]) => v.reduce((best, x, i) => (x > v[best]! ? i : best), 0);

describe("e2e: ground truth from the devices judges rollouts and drives a bandit split (issue 22)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  const clients = new Map<string, SocketClient>();

  /**
   * `n` predictions with ids on every agent, then their labels: wrong when `wrong(i, arm)` (`arm`:
   * the A/B arm that answered, if any).
   */
  const predictAndLabel = async (tag: string, wrong: (i: number, arm?: string) => boolean, n = PER_AGENT) => {
    for (const id of AGENTS) {
      const c = clients.get(id)!;
      const labels: { id: string; label: number }[] = [];
      for (let i = 0; i < n; i++) {
        const rid = `${tag}-${id}-${i}`;
        const res = await c.infer(
          MODEL,
          [{ name: "x", datatype: "FP32", shape: [1, 4], data: [i % 7, 1, (i * 3) % 5, 2] }],
          {
            id: rid,
          },
        );
        const predicted = argmax(res.outputs[0]!.data as number[]);
        labels.push({ id: rid, label: wrong(i, res.parameters?.ab_arm) ? (predicted + 1) % 4 : predicted });
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

  /** 2.0.0 under the gate, as accurate as 1.0.0: waits for feedback, then completes. */
  const equalCandidate = memo(async () => {
    await pushTiny(h, tmp.path, "2.0.0", "linear", 2);
    const r = await gated("2.0.0");
    await committedEverywhere("2.0.0");
    const before = await h.api.getRollout(r.id);
    await predictAndLabel("v2", (i) => i % 10 === 0);
    return { id: r.id, before, done: await h.api.waitForRollout(r.id, { timeoutMs: 60_000 }) };
  });
  /** 3.0.0 under the gate, right 60 % of the time against 2.0.0's 90 %: paused by the gate. */
  const worseCandidate = memo(async () => {
    await equalCandidate();
    await pushTiny(h, tmp.path, "3.0.0", "linear", 3);
    const r = await gated("3.0.0");
    await committedEverywhere("3.0.0");
    await predictAndLabel("v3", (i) => i % 5 < 2);
    const until = (x: { status: string }) => x.status === "paused";
    return { id: r.id, stopped: await h.api.waitForRollout(r.id, { timeoutMs: 60_000, until }) };
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
    const { id, before, done } = await equalCandidate();
    // Settled but no feedback for 2.0.0 yet: the gate waited, it did not pass on no data.
    expect(before.status).toBe("running");
    expect(before.gates.accuracy).toMatchObject({ verdict: "waiting", candidate: { n: 0 } });
    expect(done.status).toBe("completed");
    const view = await h.api.getRollout(id);
    expect(view.gates.accuracy).toMatchObject({
      verdict: "pass",
      decided: true,
      candidate: { n: 2 * PER_AGENT, accuracy: 0.9 },
      baseline: { n: 2 * PER_AGENT, accuracy: 0.9 },
    });
    expect(view.history.find((e) => e.type === "accuracy-decided")).toMatchObject({ detail: { verdict: "pass" } });
    // The rollout's own pooled view of the same labels, whatever its gates.
    expect(view.feedback).toEqual({
      devices: 2,
      candidate: { joined: 200, correct: 180, accuracy: 0.9 },
      baseline: { joined: 200, correct: 180, accuracy: 0.9 },
    });
    // The fleet's view: both versions' joined labels summed over the two devices; a cohort filter.
    const all = await serverGet<FeedbackSummary>(h.server, `/v1/models/${MODEL}/feedback`);
    expect(all).toMatchObject({ devices: 2, reportingDevices: 2, bandit: null });
    expect(all.versions).toEqual([
      { version: "1.0.0", arm: null, devices: 2, joined: 200, correct: 180, accuracy: 0.9, regression: null },
      { version: "2.0.0", arm: null, devices: 2, joined: 200, correct: 180, accuracy: 0.9, regression: null },
    ]);
    expect(await serverGet(h.server, `/v1/models/${MODEL}/feedback?tag=suite=e2e`)).toEqual(all);
    const none = await serverGet<FeedbackSummary>(h.server, `/v1/models/${MODEL}/feedback?tag=suite=elsewhere`);
    expect(none).toMatchObject({ devices: 0, reportingDevices: 0, versions: [] });
  }, 120_000);

  it("a candidate 30 points worse is stopped by the gate, with the figures in its reason", async () => {
    const { id, stopped } = await worseCandidate();
    expect(stopped.status).toBe("paused");
    const view = await h.api.getRollout(id);
    expect(view.reason).toMatch(/accuracy: candidate not shown within 10 points/);
    expect(view.gates.accuracy).toMatchObject({ verdict: "fail", candidate: { n: 2 * PER_AGENT, accuracy: 0.6 } });
  }, 120_000);

  it("a bandit A/B rollout moves each device's split to the more accurate candidate; the fleet view sums the arms", async () => {
    const stoppedRollout = (await worseCandidate()).id;
    await pushTiny(h, tmp.path, "4.0.0", "linear", 4);
    await h.api.createRollout({
      model: MODEL,
      version: "4.0.0",
      variant: "fp32",
      target: { tags: { suite: "e2e" } },
      strategy: "ab",
      abWeight: 0.5,
      abBandit: { minSharePercent: 10 },
      stages: [{ percent: 100 }],
      healthPolicy: { probationSeconds: 1 },
      supersedes: [stoppedRollout],
    });
    await waitFor("the 4.0.0 side running on every agent", async () => {
      for (const id of AGENTS) {
        const m = (await h.api.getDevice(id)).reported?.models.find((x) => x.model === MODEL);
        if (m?.side?.version !== "4.0.0" || m.side.state !== "committed") return false;
      }
      return true;
    });
    // The candidate arm (4.0.0) is right 95 % of the time, the control (3.0.0) half the time.
    const wrong = (i: number, arm?: string) => (arm === "candidate" ? i % 20 === 0 : i % 2 === 0);
    await predictAndLabel("ab1", wrong, 150);
    // The agents recompute the split at most once a second, on the next request.
    await new Promise((r) => setTimeout(r, 1100));
    await predictAndLabel("ab2", wrong, 20);
    const summary = await waitFor("the bandit splits reported", async () => {
      const s = await serverGet<FeedbackSummary>(h.server, `/v1/models/${MODEL}/feedback`);
      // The splits and every label of both rounds (the last ones ride in the next republish).
      const joined = s.versions.reduce((n, v) => n + (v.version === "4.0.0" || v.arm === "control" ? v.joined : 0), 0);
      return s.bandit && s.bandit.devices === 2 && s.bandit.minCandidateShare > 0.8 && joined === 2 * 170 ? s : null;
    });
    // Clipped at 1 − 10 %: the control keeps its floor.
    expect(summary.bandit).toMatchObject({ devices: 2, maxCandidateShare: 0.9 });
    // Both arms' traffic, summed over the devices: the candidate took most, the control its floor.
    expect(summary.bandit!.candidateRequests).toBeGreaterThan(summary.bandit!.controlRequests);
    expect(summary.bandit!.controlRequests).toBeGreaterThan(0);
    const arm = (version: string, a: string) => summary.versions.find((v) => v.version === version && v.arm === a);
    expect(arm("4.0.0", "candidate")).toMatchObject({ devices: 2 });
    expect(arm("3.0.0", "control")).toMatchObject({ devices: 2 });
    expect(arm("4.0.0", "candidate")!.joined + arm("3.0.0", "control")!.joined).toBe(2 * 170);
    expect(arm("4.0.0", "candidate")!.accuracy).toBeGreaterThan(0.9);
    // The same view from fleetctl, as an operator reads it, and for a cohort with two tags.
    const out = await fleetctl(h, ["models", "feedback", MODEL, "--tag", "suite=e2e", "--tag", "suite=e2e"]);
    expect(out).toMatch(/2 of 2 devices report joined feedback/);
    expect(out).toMatch(/4\.0\.0 \(candidate\)\s+accuracy 9\d\.\d%/);
    expect(out).toMatch(/bandit: candidate share 90\.0% on average/);
  }, 120_000);
});

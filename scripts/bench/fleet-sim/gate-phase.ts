import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ApiClient, RolloutView } from "../../fleetctl/api-client.js";
import type { FleetSim } from "./simulator.js";

const FLEETCTL = fileURLToPath(new URL("../../../bin/fleetctl.js", import.meta.url));

/** A stable pseudo-random share of the fleet (FNV-1a of the id): the same devices fail in every run. */
export function inShare(id: string, percent: number): boolean {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return (h >>> 0) % 10_000 < percent * 100;
}

export interface GatePhaseResult {
  rolloutId: string;
  status: string;
  ms: number;
  assigned: number;
  failedTruth: number;
  counts: RolloutView["counts"];
  /** Members whose rollback reached `committed` (they run the version from before again). */
  rolledBackCommitted: number;
  /** `fleetctl rollouts status --json` agrees with the API and with the devices' own truth. */
  exact: boolean;
  mismatches: string[];
  statusViewMs: { p50: number; max: number };
}

/**
 * Issue 14, "a rollout with staged cohorts over 10,000 devices completes, with a failing cohort
 * tripping the gate and rolling back, and the counts in `fleetctl rollouts status` exact": a share of
 * the fleet fails every new version's probation; stage 1 tolerates it, stage 2's gate does not and
 * the rollout rolls back. The counts are then checked against what the simulated devices did.
 */
export async function runGatePhase(opts: {
  api: ApiClient;
  server: { url: string; token: string };
  sim: FleetSim;
  model: string;
  version: string;
  sha256: string;
  failPercent: number;
  /** Fleet size (the stage-2 gate's minimum executed devices is a tenth of it). */
  devices: number;
  timeoutMs: number;
}): Promise<GatePhaseResult> {
  const { api, sim } = opts;
  sim.setFailing((id) => inShare(id, opts.failPercent));
  const t0 = performance.now();
  const created = await api.createRollout({
    model: opts.model,
    version: opts.version,
    variant: "fp32",
    target: { tags: { fleet: "sim" } },
    stages: [
      { percent: 2, gates: { minDevices: 10, maxFailedPercent: opts.failPercent * 2 + 5 } },
      // The stage-2 gate waits for more devices than stage 1 has: the trip comes from stage 2's own cohort.
      {
        percent: 20,
        gates: {
          minDevices: Math.max(20, Math.ceil(opts.devices * 0.1)),
          maxFailedPercent: Math.max(1, opts.failPercent / 4),
        },
      },
      { percent: 100 },
    ],
    abort: { action: "rollback" },
    healthPolicy: { probationSeconds: 1 },
  });
  const viewMs: number[] = [];
  let view: RolloutView = created;
  const deadline = Date.now() + opts.timeoutMs;
  while (Date.now() < deadline) {
    const v0 = performance.now();
    view = await api.getRollout(created.id);
    viewMs.push(performance.now() - v0);
    const settled = view.devices.every(
      (d) => d.rollback === null || d.rollback.state === "committed" || d.state === "reverted",
    );
    if (view.status === "rolled-back" && settled) break;
    if (view.status === "completed" || view.status === "aborted") break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const ms = performance.now() - t0;
  const truth = sim.outcomes(opts.sha256);
  const mismatches: string[] = [];
  const expect = (what: string, got: unknown, want: unknown) => {
    if (got !== want) mismatches.push(`${what}: ${String(got)} != ${String(want)}`);
  };
  expect("status", view.status, "rolled-back");
  expect("counts.total", view.counts.total, truth.assigned.size);
  expect("members", view.devices.length, truth.assigned.size);
  expect("counts.reverted + failed", view.counts.reverted + view.counts.failed, truth.failed.size);
  for (const d of view.devices) {
    if (!truth.assigned.has(d.deviceId)) mismatches.push(`${d.deviceId}: a member the devices never saw assigned`);
    const failed = d.state === "reverted" || d.state === "failed";
    if (failed !== truth.failed.has(d.deviceId)) mismatches.push(`${d.deviceId}: state ${d.state}`);
  }
  const rolledBackCommitted = view.devices.filter((d) => d.rollback?.state === "committed").length;
  expect("rolled back to the previous version", rolledBackCommitted, truth.assigned.size - truth.failed.size);
  // What an operator runs: the same counts through fleetctl.
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [FLEETCTL, "--json", "rollouts", "status", created.id],
    {
      env: { ...process.env, EDGEFLEET_SERVER: opts.server.url, EDGEFLEET_TOKEN: opts.server.token },
      maxBuffer: 256 << 20,
    },
  );
  const cli = JSON.parse(stdout) as RolloutView;
  expect("fleetctl counts", JSON.stringify(cli.counts), JSON.stringify(view.counts));
  const sorted = [...viewMs].sort((a, b) => a - b);
  return {
    rolloutId: created.id,
    status: view.status,
    ms: Math.round(ms),
    assigned: truth.assigned.size,
    failedTruth: truth.failed.size,
    counts: view.counts,
    rolledBackCommitted,
    exact: mismatches.length === 0,
    mismatches: mismatches.slice(0, 20),
    statusViewMs: { p50: Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0), max: Math.round(sorted.at(-1) ?? 0) },
  };
}

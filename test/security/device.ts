import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "vitest";
import { SocketClient } from "../../agent/client/socket-client.js";
import { loadProfileFile } from "../../agent/profile/load-profiles.js";
import { sessionOptionsFromProfile } from "../../agent/runtime/session-options.js";
import { sileroInputs } from "../../scripts/demo/silero.js";
import type { DesiredState } from "../../shared/schemas/desired-state.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import type { Envelope } from "../../shared/schemas/trust.js";
import { type AgentProcess, waitFor } from "../helpers/agent-process.js";
import { runDirect } from "../helpers/onnx-direct.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Adversary, type SeenEvent, startAdversary } from "./adversary.js";
import { buildValidBundle, loadSilero, MODEL, type ServedBundle, type SileroRelease } from "./bundles.js";

/**
 * One real agent with a committed Silero 5.0.0 (release counter 2) installed through the
 * adversary's broker, plus the checks every attack ends with: the device still serves exactly
 * what it served before, and nothing from the attack landed on disk.
 */

export const PROFILE = "generic-x64";
export const COMMITTED = { version: "5.0.0", releaseCounter: 2 } as const;

export interface AgentStatus {
  lastDesiredSeq: number;
  models: {
    model: string;
    state: string;
    committed: { version: string; sha256: string; releaseCounter: number } | null;
    candidate: { version: string; sha256: string } | null;
  }[];
}

export interface SecuredDevice {
  adv: Adversary;
  agent: AgentProcess;
  socket: SocketClient;
  silero: SileroRelease;
  dataDir: string;
  committed: ServedBundle;
  /** The desired state that installed the committed model (seq 1). */
  initialDesired: Envelope<DesiredState>;
  /** Infer inputs and the outputs onnxruntime-node gives for them with the profile's session options. */
  probe: { inputs: Record<string, JsonTensor>; expected: Record<string, JsonTensor> };
  close(): Promise<void>;
}

/**
 * The end of an update started after event index `since`: `failed`/`reverted` for `sha256`, or any
 * `committed` (the agent's committed event carries `bundle: null`, its candidate being cleared).
 * Whichever comes first ends the wait, so an attack that is wrongly installed fails fast.
 */
export function updateOutcome(adv: Adversary, sha256: string, since: number): Promise<SeenEvent> {
  return adv.waitForEvent(`the outcome of the update to bundle ${sha256}`, (e) => {
    if (e.type !== "update.transition" || adv.events.indexOf(e) < since) return false;
    return e.to === "committed" || ((e.to === "failed" || e.to === "reverted") && e.bundle === sha256);
  });
}

export async function startSecuredDevice(deviceId: string): Promise<SecuredDevice> {
  const tmp = await makeTempDir("ef-sec-");
  const adv = await startAdversary(tmp.path, deviceId);
  try {
    const silero = await loadSilero();
    const committed = await buildValidBundle(tmp.path, silero, COMMITTED, adv.keys.release);
    adv.serve(committed);
    const initialDesired = adv.desired([committed]);
    await adv.publishDesired(initialDesired);
    const agent = await adv.startAgent(PROFILE);

    const outcome = await updateOutcome(adv, committed.sha256, 0);
    if (outcome.to !== "committed") throw new Error(`baseline install ended ${outcome.to}: ${outcome.error?.message}`);
    const socket = new SocketClient(agent.config.socketPath);
    await waitFor(
      `${deviceId} serving ${MODEL}`,
      async () => (await socket.raw("GET", `/v2/models/${MODEL}/ready`)).status === 200,
      60_000,
    );

    const profile = await loadProfileFile(new URL(`../../device-profiles/${PROFILE}.json`, import.meta.url).pathname);
    const inputs = sileroInputs(700, 0.4);
    const expected = await runDirect(silero.modelPath, inputs, sessionOptionsFromProfile(profile));
    const device: SecuredDevice = {
      adv,
      agent,
      socket,
      silero,
      dataDir: agent.config.dataDir,
      committed,
      initialDesired,
      probe: { inputs, expected },
      close: async () => {
        await adv.close();
        await tmp.cleanup();
      },
    };
    await expectServesCommitted(device); // the baseline every attack is compared with
    return device;
  } catch (err) {
    await adv.close();
    await tmp.cleanup();
    throw err;
  }
}

export function deviceStatus(d: SecuredDevice): Promise<AgentStatus> {
  return d.socket.status<AgentStatus>();
}

/** An infer over the Unix socket is answered by the committed version, with its exact outputs. */
export async function expectServesCommitted(d: SecuredDevice): Promise<void> {
  const res = await d.socket.inferTensors(MODEL, d.probe.inputs);
  expect(res.model_name).toBe(MODEL);
  expect(res.model_version).toBe(COMMITTED.version);
  expect(res.outputs.map((o) => o.name).sort()).toEqual(Object.keys(d.probe.expected).sort());
  for (const out of res.outputs) {
    expect(out.shape).toEqual(d.probe.expected[out.name]!.shape);
    expect(out.data).toEqual(d.probe.expected[out.name]!.data);
  }
}

/**
 * The state an attack must leave alone: the committed version serves and is reported as committed,
 * `lastDesiredSeq` is unchanged when given, and only the committed bundle is installed on disk.
 */
export async function expectUnchanged(d: SecuredDevice, opts: { lastDesiredSeq?: number } = {}): Promise<void> {
  await expectServesCommitted(d);
  const status = await deviceStatus(d);
  if (opts.lastDesiredSeq !== undefined) expect(status.lastDesiredSeq).toBe(opts.lastDesiredSeq);
  expect(status.models.map((m) => m.model)).toEqual([MODEL]);
  expect(status.models[0]!.committed).toMatchObject({
    version: COMMITTED.version,
    sha256: d.committed.sha256,
    releaseCounter: COMMITTED.releaseCounter,
  });
  expect(await readdir(join(d.dataDir, "models"))).toEqual([MODEL]);
  expect(await readdir(join(d.dataDir, "models", MODEL))).toEqual([d.committed.sha256]);
  // Failed extractions leave no staging directory behind.
  expect(await readdir(join(d.dataDir, "staging"))).toEqual([]);
}

/** Every path under `dir` (not following symlinks) for which `pred` holds. */
export async function findPaths(
  dir: string,
  pred: (path: string, isSymlink: boolean) => boolean,
  out: string[] = [],
): Promise<string[]> {
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const st = await lstat(path);
    if (pred(path, st.isSymbolicLink())) out.push(path);
    if (st.isDirectory()) await findPaths(path, pred, out);
  }
  return out;
}

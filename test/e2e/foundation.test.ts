import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SocketClient } from "../../agent/client/socket-client.js";
import { loadProfileFile } from "../../agent/profile/load-profiles.js";
import { sessionOptionsFromProfile } from "../../agent/runtime/session-options.js";
import { sileroInputs, sileroModelPath } from "../../scripts/demo/silero.js";
import { runDirect } from "../helpers/onnx-direct.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";

const PROFILES = { "e2e-x64": "generic-x64", "e2e-pi4": "raspberry-pi-4" } as const;

describe("foundation: a model travels from the fleet server to devices and answers local apps", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-e2e-");
    h = await startHarness(tmp.path);
    for (const [id, profile] of Object.entries(PROFILES)) await h.startAgent(id, profile);
    await h.pushSilero();
  });

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("rolls out to every agent, each commits, and infer over each socket equals onnxruntime-node run directly", async () => {
    const rollout = await h.api.createRollout({
      model: "silero-vad",
      version: "5.0.0",
      // Compared exactly with fp32 below; without it the Pi 4 profile would get int8 (issue 5).
      variant: "fp32",
      target: { deviceIds: Object.keys(PROFILES) },
      healthPolicy: { probationSeconds: 1 },
    });
    const final = await h.api.waitForRollout(rollout.id, { timeoutMs: 120_000 });
    expect(final.status, JSON.stringify(final.devices)).toBe("completed");
    expect(final.counts).toMatchObject({ total: 2, committed: 2, failed: 0 });

    const inputs = sileroInputs(700, 0.4);
    for (const [id, profileId] of Object.entries(PROFILES)) {
      // Same session options as the agent's profile, so "exact" compares like with like.
      const profile = await loadProfileFile(
        new URL(`../../device-profiles/${profileId}.json`, import.meta.url).pathname,
      );
      const expected = await runDirect(sileroModelPath(), inputs, sessionOptionsFromProfile(profile));
      const client = new SocketClient(h.agents.get(id)!.config.socketPath);
      const res = await client.inferTensors("silero-vad", inputs);
      expect(res.model_name).toBe("silero-vad");
      expect(res.model_version).toBe("5.0.0");
      expect(res.outputs.map((o) => o.name).sort()).toEqual(["output", "stateN"]);
      for (const out of res.outputs) {
        expect(out.shape).toEqual(expected[out.name]!.shape);
        expect(out.data).toEqual(expected[out.name]!.data);
      }
    }

    const device = (await h.api.getDevice("e2e-x64")) as {
      presence: string;
      reported: { models: { model: string; state: string; committed: { version: string } | null }[] };
    };
    expect(device.presence).toBe("online");
    expect(device.reported.models).toEqual([
      expect.objectContaining({
        model: "silero-vad",
        state: "committed",
        committed: expect.objectContaining({ version: "5.0.0" }),
      }),
    ]);
  });

  it("offline: with server and broker gone, a restarted agent serves its committed model from disk", async () => {
    const inputs = sileroInputs(300, 0.2);
    const before = await new SocketClient(h.agents.get("e2e-x64")!.config.socketPath).inferTensors(
      "silero-vad",
      inputs,
    );
    await h.server.close();
    const agent = await h.restartAgent("e2e-x64", "SIGKILL");
    const client = await waitForServing(agent, "silero-vad");
    const after = await client.inferTensors("silero-vad", inputs);
    expect(after.model_version).toBe("5.0.0");
    expect(after.outputs).toEqual(before.outputs);
    const status = await client.status<{ models: { model: string; committed: { version: string } | null }[] }>();
    expect(status.models).toEqual([expect.objectContaining({ model: "silero-vad" })]);
  });
});

import type { ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILD_PHASES, type BuildPhase } from "../../fleet-server/registry/build-tracker.js";
import { sileroInputs, sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { ApiClient, type ApiError, type ModelBuild } from "../../scripts/fleetctl/api-client.js";
import { freePort, waitForPort } from "../helpers/ports.js";
import { startServerProcess, stopProcess } from "../helpers/server-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";

/**
 * Model builds survive a server restart: the fleet server runs as a real process (the
 * `fleet-server` bin) on a temp data dir, is SIGKILLed in the middle of a build and started
 * again on the same SQLite file. A finished build reads back unchanged; the killed one is
 * `failed` with BUILD_INTERRUPTED, and the operator's remedy (create the version again) works.
 */

describe("model builds across a server restart", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: ChildProcess;
  let api: ApiClient;
  let httpPort: number;
  let mqttPort: number;
  const dataDir = () => join(tmp.path, "server");

  const start = async () => {
    server = startServerProcess(dataDir(), httpPort, mqttPort);
    await waitForPort(httpPort, 60_000);
    const token = (await readFile(join(dataDir(), "admin-token"), "utf8")).trim();
    api = new ApiClient({ baseUrl: `http://127.0.0.1:${httpPort}`, token });
  };

  beforeAll(async () => {
    tmp = await makeTempDir("ef-builds-");
    httpPort = await freePort();
    mqttPort = await freePort();
    await start();
  });
  afterAll(async () => {
    if (server) await stopProcess(server, "SIGTERM");
    await tmp?.cleanup();
  });

  it("a finished build reads back unchanged; a build killed mid-way is failed with BUILD_INTERRUPTED", async () => {
    const up = await api.upload(sileroModelPath());
    const body = { name: "vad", upload: up.sha256, samples: sileroSamples() };

    const first = await api.startModelBuild({ ...body, version: "1.0.0" });
    let finished: ModelBuild;
    for (;;) {
      finished = await api.getModelBuild(first.buildId);
      if (finished.status !== "running") break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(finished.status).toBe("succeeded");

    // Many calibration inputs keep this build busy for a while (each runs on fp32 and on int8).
    const calibration = Array.from({ length: 200 }, (_, i) => ({ inputs: sileroInputs(100 + 17 * i) }));
    const second = await api.startModelBuild({ ...body, version: "1.0.1", calibration });
    let seen: ModelBuild;
    for (;;) {
      seen = await api.getModelBuild(second.buildId);
      if (seen.status !== "running" || seen.phase !== null) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await stopProcess(server, "SIGKILL");
    // Killed while it ran, in a known phase (else this test proves nothing).
    expect(seen.status).toBe("running");
    const seenPhase = seen.phase as BuildPhase;

    await start();
    expect(await api.getModelBuild(first.buildId)).toEqual(finished);

    const interrupted = await api.getModelBuild(second.buildId);
    expect(interrupted.status).toBe("failed");
    expect(interrupted.error?.code).toBe("BUILD_INTERRUPTED");
    expect(interrupted.error?.message).toMatch(
      /vad@1\.0\.1 was not registered.*upload the model and create the version/,
    );
    expect(interrupted.result).toBeUndefined();
    // Phase changes are written at once, so the stored phase is at least the one seen before the kill.
    expect(BUILD_PHASES.indexOf(interrupted.phase as BuildPhase)).toBeGreaterThanOrEqual(
      BUILD_PHASES.indexOf(seenPhase),
    );
    expect(interrupted.phases.at(-1)).toMatchObject({ name: interrupted.phase, status: "failed" });
    expect(interrupted.phases.every((p) => p.status !== "running")).toBe(true);

    // Nothing of it was registered, and creating the version again works (the upload is kept).
    const missing = await api.getModelVersion("vad", "1.0.1").then(
      () => null,
      (e: unknown) => e as ApiError,
    );
    expect(missing?.code).toBe("NOT_FOUND");
    const again = await api.startModelBuild({ ...body, version: "1.0.1" });
    let retried: ModelBuild;
    for (;;) {
      retried = await api.getModelBuild(again.buildId);
      if (retried.status !== "running") break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(retried.status).toBe("succeeded");

    // A clean stop and start also keeps every build.
    await stopProcess(server, "SIGTERM");
    await start();
    expect(await api.getModelBuild(again.buildId)).toEqual(retried);
    expect((await api.getModelBuild(second.buildId)).error?.code).toBe("BUILD_INTERRUPTED");
  });
});

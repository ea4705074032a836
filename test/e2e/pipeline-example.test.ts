import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../scripts/fleetctl/exit-codes.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { tinySamples, writeTinyModel } from "../helpers/tiny-models.js";
import { type Harness, startHarness } from "./fleet-harness.js";

/**
 * Issue 21: the shell pipeline in docs/examples/pipeline.sh, run as a CI job would run it, against
 * a real fleet server and two real agents: a good model goes through validate → push → canary →
 * gates → everyone and exits 0; a model its devices refuse trips the canary's gate, is rolled back,
 * and the pipeline exits with fleetctl's documented code for that; a bad token exits 8.
 */
const SCRIPT = fileURLToPath(new URL("../../docs/examples/pipeline.sh", import.meta.url));
const FLEETCTL = fileURLToPath(new URL("../../bin/fleetctl.js", import.meta.url));
const MODEL = "pipe-tiny";
const AGENTS = ["pipe-a", "pipe-b"];

describe("e2e: docs/examples/pipeline.sh against a real fleet (issue 21)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let token = "";
  let samples = "";

  /** Runs the pipeline script; resolves with its exit code and output (never throws on a non-zero exit). */
  const pipeline = (version: string, file: string, env: Record<string, string> = {}) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        "sh",
        [SCRIPT, MODEL, version, file, samples],
        {
          env: {
            ...process.env,
            FLEETCTL: `${process.execPath} ${FLEETCTL}`,
            EDGEFLEET_SERVER: h.server.httpUrl,
            EDGEFLEET_TOKEN: token,
            TARGET_TAG: "suite=e2e",
            CANARY_PERCENT: "50",
            SOAK_SECONDS: "0",
            PROBATION_SECONDS: "1",
            WAIT_SECONDS: "120",
            QUANTIZE: "none",
            ...env,
          },
        },
        (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}\n${stderr}` }),
      );
    });
  /** 1.0.0 through the pipeline, once (the second case needs it too, also when run alone). */
  let good: Promise<{ code: number; out: string }> | null = null;
  const goodModel = () =>
    (good ??= writeTinyModel(tmp.path, "linear", { scale: 1 }).then((file) => pipeline("1.0.0", file)));
  const committed = async (id: string) =>
    (await h.api.getDevice(id)).reported?.models.find((m) => m.model === MODEL)?.committed?.version;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-pipe-");
    h = await startHarness(tmp.path);
    await Promise.all(AGENTS.map((id) => h.startAgent(id, "generic-x64")));
    token = (await h.api.createToken({ name: "ci", role: "operator" })).token;
    samples = join(tmp.path, "samples.json");
    await writeFile(samples, JSON.stringify(tinySamples()));
  }, 120_000);
  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("a good model: validated, pushed, canary then everyone; exit 0", async () => {
    const r = await goodModel();
    expect(r.code, r.out).toBe(EXIT.OK);
    expect(r.out).toContain(`${MODEL} 1.0.0 runs on every device tagged suite=e2e`);
    for (const id of AGENTS) expect(await committed(id)).toBe("1.0.0");
  }, 180_000);

  it("a model the devices refuse: the canary's gate trips, the rollout rolls back, exit 6; devices keep 1.0.0", async () => {
    expect((await goodModel()).code).toBe(EXIT.OK);
    // Built for arm64 only: these x64 agents refuse it (INCOMPATIBLE), which is the canary's failure.
    const file = await writeTinyModel(tmp.path, "linear", { scale: 2 });
    const r = await pipeline("2.0.0", file, { PUSH_FLAGS: "--arch arm64" });
    expect(r.code, r.out).toBe(EXIT.ROLLED_BACK);
    expect(r.out).toMatch(/rolled back by its gate/);
    await waitFor("both agents still on 1.0.0", async () => {
      for (const id of AGENTS) if ((await committed(id)) !== "1.0.0") return false;
      return true;
    });
  }, 180_000);

  it("a token the server refuses: exit 8 at the push, nothing uploaded", async () => {
    const file = await writeTinyModel(tmp.path, "linear", { scale: 3 });
    const r = await pipeline("3.0.0", file, { EDGEFLEET_TOKEN: "ef_not-a-real-token" });
    expect(r.code, r.out).toBe(EXIT.UNAUTHORIZED);
    await expect(h.api.getModelVersion(MODEL, "3.0.0")).rejects.toMatchObject({ status: 404 });
  }, 120_000);
});

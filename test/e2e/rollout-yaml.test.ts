import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiError, type CreateRolloutBody, type RolloutView } from "../../scripts/fleetctl/api-client.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { tinySamples, writeTinyModel } from "../helpers/tiny-models.js";
import { type Harness, startHarness } from "./fleet-harness.js";

/**
 * Rollout definitions as YAML against a real server: `POST /v1/rollouts` with a YAML body and
 * `fleetctl rollouts create --file x.yaml` (a real process) store the same definition as the JSON
 * document; YAML errors are refused with their position, schema errors with the same paths.
 * The definition is the worked example of docs/operations.md (docs/examples/rollout-vad-canary.*),
 * so the example itself is checked against a real server: 20 lab devices, `vad@2.1.0`.
 */
const run = promisify(execFile);
const FLEETCTL = fileURLToPath(new URL("../../bin/fleetctl.js", import.meta.url));
const example = (ext: string) =>
  readFile(fileURLToPath(new URL(`../../docs/examples/rollout-vad-canary.${ext}`, import.meta.url)), "utf8");

type View = RolloutView & { definition: Record<string, unknown> };

/** The API error a promise rejects with (fails when it resolves). */
async function rejection(p: Promise<unknown>): Promise<ApiError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiError);
  return err as ApiError;
}

describe("YAML rollout definitions (HTTP and fleetctl)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let jsonDefinition: Record<string, unknown>;
  const cli = (...args: string[]) =>
    run(process.execPath, [FLEETCTL, "--server", h.server.httpUrl, ...args], {
      env: { ...process.env, EDGEFLEET_TOKEN: h.server.adminToken },
    });
  /** Creates, reads back the stored definition, aborts (frees the devices for the next one). */
  async function definitionOf(created: Promise<RolloutView>): Promise<Record<string, unknown>> {
    const r = (await created) as View;
    await h.api.rolloutCommand(r.id, "abort");
    return r.definition;
  }

  beforeAll(async () => {
    tmp = await makeTempDir("ef-rollout-yaml-");
    h = await startHarness(tmp.path);
    for (let i = 0; i < 20; i++) {
      await h.api.enrollDevice({ id: `lab-${i}`, profile: "generic-x64", tags: { site: "lab" } });
    }
    const up = await h.api.upload(await writeTinyModel(tmp.path, "linear"));
    await h.api.createModel({ name: "vad", version: "2.1.0", upload: up.sha256, samples: tinySamples() });
    const body = JSON.parse(await example("json")) as CreateRolloutBody;
    jsonDefinition = await definitionOf(h.api.createRollout(body));
    expect(jsonDefinition).toMatchObject({ model: "vad", strategy: "canary", abort: { action: "rollback" } });
  }, 120_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("a YAML body (application/yaml, text/yaml; charset) stores the JSON document's definition", async () => {
    const yaml = await example("yaml");
    expect(await definitionOf(h.api.createRolloutFromYaml(yaml))).toEqual(jsonDefinition);
    const res = await fetch(new URL("/v1/rollouts", h.server.httpUrl), {
      method: "POST",
      headers: { authorization: `Bearer ${h.server.adminToken}`, "content-type": "text/yaml; charset=utf-8" },
      body: yaml,
    });
    expect(res.status).toBe(201);
    expect(await definitionOf(res.json() as Promise<RolloutView>)).toEqual(jsonDefinition);
  });

  it("a YAML syntax error is a 400 BAD_REQUEST with line and column; nothing is created", async () => {
    const { rollouts: before } = await h.api.listRollouts();
    const err = await rejection(
      h.api.createRolloutFromYaml("model: vad\nversion: 2.1.0\ntarget:\n  tags: {site: lab\nstrategy: canary\n"),
    );
    expect(err).toMatchObject({ status: 400, code: "BAD_REQUEST" });
    expect(err.message).toMatch(/^body: YAML syntax error at line 5, column 1: /);
    expect(err.details).toMatchObject({ format: "yaml", line: 5, column: 1 });
    expect((await h.api.listRollouts()).rollouts).toHaveLength(before.length);
  });

  it("parsed YAML meets the same definition schema: the same 400 VALIDATION_FAILED with the same path", async () => {
    const yaml = "model: vad\nversion: 2.1.0\ntarget: {tags: {site: lab}}\nstages:\n  - percent: 50\n  - percent: 10\n";
    const fromYaml = await rejection(h.api.createRolloutFromYaml(yaml));
    const fromJson = await rejection(
      h.api.createRollout({
        model: "vad",
        version: "2.1.0",
        target: { tags: { site: "lab" } },
        stages: [{ percent: 50 }, { percent: 10 }],
      }),
    );
    expect(fromYaml).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
    expect(fromYaml.message).toBe("body.stages[1].percent: stage percents must increase: 10 follows 50");
    expect(fromYaml.details).toEqual(fromJson.details);
  });

  it("an alias bomb and a custom tag are refused (400 BAD_REQUEST)", async () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (const l of ["b", "c", "d", "e", "f"]) {
      bomb.push(
        `${l}: &${l} [${Array(9)
          .fill(`*${bomb.at(-1)![0]}`)
          .join(", ")}]`,
      );
    }
    const e1 = await rejection(h.api.createRolloutFromYaml(bomb.join("\n")));
    expect(e1).toMatchObject({ status: 400, code: "BAD_REQUEST", details: { reason: "EXCESSIVE_ALIASES" } });
    const e2 = await rejection(h.api.createRolloutFromYaml("model: !shell vad\n"));
    expect(e2).toMatchObject({ status: 400, code: "BAD_REQUEST", details: { line: 1, column: 8 } });
  });

  it("other routes do not read YAML", async () => {
    const res = await fetch(new URL("/v1/devices", h.server.httpUrl), {
      method: "POST",
      headers: { authorization: `Bearer ${h.server.adminToken}`, "content-type": "application/yaml" },
      body: "id: yaml-device\n",
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      error: { code: "BAD_REQUEST", details: { fastifyCode: "FST_ERR_CTP_INVALID_MEDIA_TYPE" } },
    });
    expect((await h.api.listDevices()).devices.map((d) => d.id)).not.toContain("yaml-device");
  });

  it("fleetctl rollouts create --file x.yaml (and a name without extension) with flags on top", async () => {
    const yamlPath = join(tmp.path, "vad-2.1.0.yaml");
    await writeFile(yamlPath, await example("yaml"));
    const out = await cli("--json", "rollouts", "create", "--file", yamlPath);
    expect(await definitionOf(Promise.resolve(JSON.parse(out.stdout) as RolloutView))).toEqual(jsonDefinition);

    const bare = join(tmp.path, "vad-rollout");
    await writeFile(bare, await example("yaml"));
    const flagged = await cli("--json", "rollouts", "create", "--file", bare, "--max-per-minute", "5");
    const def = await definitionOf(Promise.resolve(JSON.parse(flagged.stdout) as RolloutView));
    expect(def).toEqual({ ...jsonDefinition, rate: { maxPerMinute: 5 } });
  });

  it("fleetctl reports a YAML error with the file, line and column, and creates nothing", async () => {
    const { rollouts: before } = await h.api.listRollouts();
    const bad = join(tmp.path, "bad.yml");
    await writeFile(bad, "model: vad\nversion: 2.1.0\n  target: x\n");
    const err = await cli("rollouts", "create", "--file", bad).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toMatch(
      new RegExp(`error BAD_REQUEST: ${bad.replace(/[.]/g, "\\.")}: YAML syntax error at line 2, column 10: `),
    );
    expect((await h.api.listRollouts()).rollouts).toHaveLength(before.length);
  });
});

import { execFile } from "node:child_process";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { bar } from "../../scripts/fleetctl/progress.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness } from "./fleet-harness.js";

const run = promisify(execFile);
const FLEETCTL = fileURLToPath(new URL("../../bin/fleetctl.js", import.meta.url));

/** The operator's CLI as a real process against a real server and agent. */
describe("fleetctl", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  const cli = (...args: string[]) =>
    run(process.execPath, [FLEETCTL, "--server", h.server.httpUrl, ...args], {
      env: { ...process.env, EDGEFLEET_TOKEN: h.server.adminToken },
    });

  beforeAll(async () => {
    tmp = await makeTempDir("ef-cli-");
    h = await startHarness(tmp.path);
  });
  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("pushes a model with upload progress, rolls it out with --wait, lists devices", async () => {
    await h.startAgent("cli-1", "generic-x64");
    const samples = join(tmp.path, "samples.json");
    await writeFile(samples, JSON.stringify(sileroSamples()));

    const push = await cli(
      "--json",
      "models",
      "push",
      sileroModelPath(),
      "--name",
      "vad",
      "--version",
      "1.0.0",
      "--samples",
      samples,
    );
    expect(push.stderr).toMatch(/uploading \[#+/);
    expect(push.stderr).toContain("model vad@1.0.0 registered");
    // The server's real build phases, in order, each on its own line (stderr is not a TTY here).
    const phaseLines = push.stderr
      .split("\n")
      .map((l) => l.split(" ")[0]!.replace(/…$/, ""))
      .filter((w) =>
        ["inspecting", "recording-samples", "quantizing", "validating-int8", "packing", "signing"].includes(w),
      );
    expect([...new Set(phaseLines)]).toEqual([
      "inspecting",
      "recording-samples",
      "quantizing",
      "validating-int8",
      "packing",
      "signing",
    ]);
    expect(push.stderr).toContain(`recording-samples ${bar(1)} ${sileroSamples().length}/${sileroSamples().length}`);
    expect(push.stderr).toMatch(/quantizing \[#{24}\] 100% (\d+)\/\1/);
    const created = JSON.parse(push.stdout) as { name: string; variants: { variant: string }[] };
    expect(created.name).toBe("vad");
    expect(created.variants.map((v) => v.variant)).toEqual(["fp32", "int8"]);

    const rollout = await cli(
      "rollouts",
      "create",
      "--model",
      "vad",
      "--version",
      "1.0.0",
      "--devices",
      "cli-1",
      "--probation-seconds",
      "1",
      "--wait",
    );
    expect(rollout.stdout).toMatch(/completed/);
    expect(rollout.stdout).toMatch(/cli-1\s+committed/);
    // stdout is a pipe: one line per change, no redraw codes, then the final display (issue 23).
    expect(rollout.stdout.includes("\r") || rollout.stdout.includes("\u001b")).toBe(false);
    const changes = rollout.stdout.split("\n").filter((l) => /^rollout r-\S+ \S+ .*\| \d+ devices: /.test(l));
    expect(changes.length).toBeGreaterThanOrEqual(2);
    expect(new Set(changes).size).toBe(changes.length);
    expect(changes.at(-1)).toMatch(/ completed .*committed 1/);

    const list = await cli("devices", "list");
    expect(list.stdout).toMatch(/cli-1\s+online\s+generic-x64\s+vad@1\.0\.0 committed/);
  });

  it("reports API errors with their code and a non-zero exit", async () => {
    const err = await cli("rollouts", "status", "r-does-not-exist").then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toContain("error NOT_FOUND");
  });

  it("devices add --password-file writes the password 0600 and refuses an existing file (issue 23)", async () => {
    const file = join(tmp.path, "pw-cli-2");
    const added = await cli("devices", "add", "cli-2", "--password-file", file);
    expect(added.stdout).toBe(`enrolled cli-2; password written to ${file} (mode 0600)\n`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const password = (await readFile(file, "utf8")).trim();
    expect(password.length).toBeGreaterThanOrEqual(16);
    const again = await cli("devices", "add", "cli-3", "--password-file", file).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(again?.code).toBe(2);
    expect(again?.stderr).toContain("already exists (refusing to overwrite a secret)");
    expect((await readFile(file, "utf8")).trim()).toBe(password);
    // Refused before enrolling: cli-3 was not created.
    expect((await cli("devices", "list")).stdout).not.toContain("cli-3");
  });

  it("refuses to run without a token", async () => {
    const err = await run(process.execPath, [FLEETCTL, "--server", h.server.httpUrl, "devices", "list"], {
      env: { ...process.env, EDGEFLEET_TOKEN: "" },
    }).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain("no API token");
  });
});

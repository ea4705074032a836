import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FleetServer } from "../../fleet-server/main.js";
import type { VersionView } from "../../shared/http/models.js";
import { runFleetctl } from "../helpers/fleetctl-cli.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { tinySamples, writeTinyModel } from "../helpers/tiny-models.js";
import { type Harness, startHarness } from "./fleet-harness.js";

/**
 * Issue 21, signed lineage: `fleetctl models push --lineage` with the documented fields, the lineage
 * signed into the manifest and shown by `models show`, `models diff` between two versions, and a
 * lineage file with an unknown key refused before upload, naming the key. (A device refusing a
 * manifest whose lineage was altered after signing: test/security/trust-rejections.test.ts, 11b.)
 */
describe("fleetctl models push --lineage / show / diff", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let server: FleetServer;
  const cli = (...args: string[]) => runFleetctl(server, server.adminToken, args);
  const LINEAGE_1 = {
    trainingData: { version: "2026-10", hash: "sha256:1111" },
    code: { repository: "https://git.example.com/ml/lin.git", commit: "aaaa111" },
    hyperparameters: { lr: 0.01, epochs: 10 },
    metrics: { accuracy: 0.9 },
    labels: { team: "vision" },
  };
  const LINEAGE_2 = {
    ...LINEAGE_1,
    trainingData: { version: "2026-11", hash: "sha256:2222" },
    code: { ...LINEAGE_1.code, commit: "bbbb222" },
    hyperparameters: { lr: 0.005, epochs: 10 },
    metrics: { accuracy: 0.93 },
    parentVersion: "1.0.0",
  };
  const push = async (version: string, scale: number, lineage: unknown) => {
    const model = await writeTinyModel(tmp.path, "linear", { scale });
    const lin = join(tmp.path, `lineage-${version}.json`);
    await writeFile(lin, JSON.stringify(lineage));
    const samples = join(tmp.path, "samples.json");
    await writeFile(samples, JSON.stringify(tinySamples()));
    return cli(
      "models",
      "push",
      model,
      "--name",
      "lin",
      "--version",
      version,
      "--samples",
      samples,
      "--quantize",
      "none",
      "--lineage",
      lin,
    );
  };

  beforeAll(async () => {
    tmp = await makeTempDir("ef-lineage-");
    h = await startHarness(tmp.path);
    server = h.server;
    const [a, b] = [await push("1.0.0", 1, LINEAGE_1), await push("1.1.0", 2, LINEAGE_2)];
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("the lineage is stored and signed into the manifest as pushed; show prints it", async () => {
    const r = await cli("--json", "models", "show", "lin", "1.1.0");
    expect(r.code, r.stderr).toBe(0);
    const v = JSON.parse(r.stdout) as VersionView;
    expect(v.lineage).toEqual(LINEAGE_2);
    expect(v.manifest?.signed.lineage).toEqual(LINEAGE_2);
    expect(v.manifest?.signatures.length).toBeGreaterThan(0);
    const human = await cli("models", "show", "lin", "1.1.0");
    expect(human.stdout).toContain('lineage.code.commit: "bbbb222"');
    expect(human.stdout).toContain('lineage.parentVersion: "1.0.0"');
  });

  it("diff shows what changed: lineage fields, and nothing that did not", async () => {
    const r = await cli("models", "diff", "lin", "1.0.0", "1.1.0");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('~ lineage.code.commit: "aaaa111" → "bbbb222"');
    expect(r.stdout).toContain("~ lineage.metrics.accuracy: 0.9 → 0.93");
    expect(r.stdout).toContain('+ lineage.parentVersion: "1.0.0"');
    expect(r.stdout).toContain("~ lineage.hyperparameters.lr: 0.01 → 0.005");
    expect(r.stdout).not.toContain("lineage.labels.team");
    expect(r.stdout).not.toContain("lineage.hyperparameters.epochs");
    // Different weights, same graph: the upload differs, the inputs do not.
    expect(r.stdout).toContain("~ upload:");
    expect(r.stdout).not.toContain("input.x");
    const j = JSON.parse((await cli("--json", "models", "diff", "lin", "1.0.0", "1.1.0")).stdout) as {
      changes: { field: string }[];
    };
    expect(j.changes.map((c) => c.field)).toContain("lineage.trainingData.hash");
  });

  it("a lineage file with an unknown or misspelt key is refused before upload, naming it (exit 2)", async () => {
    const r = await push("1.2.0", 3, { ...LINEAGE_1, trainingdata: { version: "x" } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--lineage/);
    expect(r.stderr).toMatch(/trainingdata/);
    expect((await cli("models", "show", "lin", "1.2.0")).code).toBe(1);
  });
});

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import type { VersionView } from "../../shared/http/models.js";
import { ManifestSchema } from "../../shared/schemas/manifest.js";
import { runFleetctl } from "../helpers/fleetctl-cli.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { SILERO_SEQUENCE } from "../integration/agent-runtime/sequence-fixtures.js";
import { type Harness, startHarness } from "./fleet-harness.js";

/**
 * Issue 18: `fleetctl models push --sequence <file.json>` passes a stateful model's sequence spec
 * through to the server, which signs it into the manifest; a spec the shared schema refuses is
 * refused before the upload, naming the flag and the problem.
 */
describe("fleetctl models push --sequence", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  const cli = (...args: string[]) => runFleetctl(h.server, h.server.adminToken, args);
  const push = (version: string, spec: unknown) =>
    (async () => {
      const file = join(tmp.path, `sequence-${version}.json`);
      await writeFile(file, JSON.stringify(spec));
      const samples = join(tmp.path, "samples.json");
      await writeFile(samples, JSON.stringify(sileroSamples()));
      return cli(
        "models",
        "push",
        sileroModelPath(),
        "--name",
        "vad",
        "--version",
        version,
        "--samples",
        samples,
        "--quantize",
        "none",
        "--sequence",
        file,
      );
    })();

  beforeAll(async () => {
    tmp = await makeTempDir("ef-fseq-");
    h = await startHarness(tmp.path);
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("signs the pushed spec into the manifest; a bad spec is refused before the upload", async () => {
    const ok = await push("1.0.0", SILERO_SEQUENCE);
    expect(ok.code, ok.stderr).toBe(0);
    const shown = await cli("--json", "models", "show", "vad", "1.0.0");
    expect(shown.code, shown.stderr).toBe(0);
    const v = JSON.parse(shown.stdout) as VersionView;
    expect(ManifestSchema.parse(v.manifest!.signed).sequence).toMatchObject(SILERO_SEQUENCE);

    const bad = await push("1.0.1", { constants: SILERO_SEQUENCE.constants });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("--sequence: a sequence needs a state or a window");
    expect(bad.stderr).not.toContain("uploaded");
  }, 60_000);
});

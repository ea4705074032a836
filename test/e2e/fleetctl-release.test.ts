import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { ApiClient } from "../../scripts/fleetctl/api-client.js";
import type { PendingReleaseView, SignatureSubmitResult } from "../../shared/schemas/release-signing.js";
import { generateKeyPair } from "../../shared/trust/keys.js";
import { makeTempDir } from "../helpers/temp-dir.js";

const run = promisify(execFile);
const FLEETCTL = fileURLToPath(new URL("../../bin/fleetctl.js", import.meta.url));

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `fleetctl release pending` and `fleetctl release upload` as real processes against a real
 * server in offline release mode (2 of 3 release keys, kept off the server).
 */
describe("fleetctl release pending / upload", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: FleetServer;
  let api: ApiClient;
  const dataDir = () => join(tmp.path, "server");
  const offline = (n: number) => join(tmp.path, "offline-keys", `release-v2-${n}.key`);
  const file = (name: string) => join(tmp.path, name);

  /** Runs fleetctl; a non-zero exit is returned, not thrown. */
  const cli = (...args: string[]): Promise<CliResult> =>
    run(process.execPath, [FLEETCTL, ...(server ? ["--server", server.httpUrl] : []), ...args], {
      env: { ...process.env, ...(server ? { EDGEFLEET_TOKEN: server.adminToken } : {}) },
    }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  const pendingJson = async () => {
    const r = await cli("--json", "release", "pending");
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { pending: PendingReleaseView[] }).pending;
  };

  beforeAll(async () => {
    tmp = await makeTempDir("ef-cli-rel-");
    expect((await cli("keys", "init", "--data-dir", dataDir())).code).toBe(0);
    const rotate = await cli(
      "keys",
      "rotate",
      "release",
      "--data-dir",
      dataDir(),
      "--count",
      "3",
      "--threshold",
      "2",
      "--out-dir",
      join(tmp.path, "offline-keys"),
    );
    expect(rotate.code, rotate.stderr).toBe(0);
    server = await startFleetServer({
      dataDir: dataDir(),
      httpPort: 0,
      mqttPort: 0,
      offlineRelease: true,
      log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    });
    api = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });
    const up = await api.upload(sileroModelPath());
    await api.createModel({
      name: "vad",
      version: "1.0.0",
      upload: up.sha256,
      samples: sileroSamples(),
      quantize: "none",
    });
  });
  afterAll(async () => {
    await server?.close();
    await tmp?.cleanup();
  });

  it("pending shows the release, what to sign and the signatures present/required", async () => {
    const human = await cli("release", "pending");
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain("vad@1.0.0 fp32 (upload, release 1)  signatures 0/2");
    expect(human.stdout).toMatch(/still missing 2 signatures, from any of [0-9a-f]{16}…, [0-9a-f]{16}…, [0-9a-f]{16}…/);

    const [p] = await pendingJson();
    expect(p).toMatchObject({ name: "vad", version: "1.0.0", variant: "fp32", kind: "upload" });
    expect(p!.signatures).toMatchObject({ required: 2, valid: 0, needed: 2, signedBy: [] });
    expect(p!.signatures.missing).toHaveLength(3);
    expect(human.stdout).toContain(`sign      manifest ${p!.id}`);

    const saved = await cli("release", "pending", "--save", file("to-sign"));
    expect(saved.code, saved.stderr).toBe(0);
    const path = saved.stdout.match(/saved (\S+)/)![1]!;
    expect(path).toBe(join(file("to-sign"), `vad-1.0.0-fp32-upload-${p!.id.slice(0, 12)}.json`));
    // Two key holders sign the saved file, each on their own.
    expect((await cli("release", "sign", path, "--key", offline(1), "--out", file("holder-1.json"))).code).toBe(0);
    expect((await cli("release", "sign", path, "--key", offline(3), "--out", file("holder-3.json"))).code).toBe(0);
  });

  it("upload with too few signatures keeps them and says what is missing", async () => {
    const r = await cli("release", "upload", file("holder-1.json"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `vad@1.0.0 fp32 (upload, release 1): 1 new signature from ${file("holder-1.json")}; 1/2 — not published yet`,
    );
    expect(r.stdout).toMatch(/still missing 1 signature, from any of [0-9a-f]{16}…, [0-9a-f]{16}…/);
    const [p] = await pendingJson();
    expect(p!.signatures).toMatchObject({ valid: 1, needed: 1 });
    expect(p!.signatures.missing).toHaveLength(2);
    // The same file again adds nothing (a key counts once).
    const again = await cli("--json", "release", "upload", file("holder-1.json"));
    expect((JSON.parse(again.stdout) as SignatureSubmitResult[])[0]).toMatchObject({ added: 0, published: false });
  });

  it("bad files give a clear error code and message, and change nothing", async () => {
    await writeFile(file("garbage.json"), "this is not json");
    const garbage = await cli("release", "upload", file("garbage.json"));
    expect(garbage.code).toBe(2);
    expect(garbage.stderr).toMatch(/^error VALIDATION_FAILED: .*garbage\.json: not JSON/);

    // The unsigned manifest as saved by `release pending --save`.
    const saved = (await cli("release", "pending", "--save", file("to-sign"))).stdout.match(/saved (\S+)/)![1]!;
    const unsigned = await cli("release", "upload", saved);
    expect(unsigned.code).toBe(2);
    expect(unsigned.stderr).toMatch(
      /error VALIDATION_FAILED: .*unsigned manifest: sign it first \(fleetctl release sign/,
    );

    // A file that is fine except for one: nothing is uploaded at all.
    const both = await cli("release", "upload", file("holder-3.json"), file("garbage.json"));
    expect(both.code).toBe(2);
    expect(both.stdout).toBe("");

    // Signed by a key that is not a release key.
    const stranger = file("stranger.key");
    await writeFile(stranger, `${generateKeyPair().secretKeyHex}\n`, { mode: 0o600 });
    await cli("release", "sign", saved, "--key", stranger, "--out", file("stranger.json"));
    const byStranger = await cli("release", "upload", file("stranger.json"));
    expect(byStranger.code).toBe(1);
    expect(byStranger.stderr).toMatch(
      /^error SIGNATURE_THRESHOLD_NOT_MET: none of the 1 uploaded signature\(s\) is a valid release signature/,
    );

    // Valid release keys over a different manifest (a raised release counter).
    const doc = JSON.parse(await readFile(saved, "utf8")) as { manifest: { releaseCounter: number } };
    doc.manifest.releaseCounter += 100;
    await writeFile(file("tampered.json"), JSON.stringify(doc.manifest));
    await cli("release", "sign", file("tampered.json"), "--key", offline(2), "--key", offline(3));
    const tampered = await cli("release", "upload", file("tampered.json"));
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).toMatch(/^error MANIFEST_MISMATCH: the signed manifest differs/);

    const [p] = await pendingJson();
    expect(p!.signatures).toMatchObject({ valid: 1, needed: 1 });
  });

  it("upload of the remaining signature publishes the release", async () => {
    const r = await cli("--json", "release", "upload", file("holder-3.json"));
    expect(r.code, r.stderr).toBe(0);
    const [res] = JSON.parse(r.stdout) as SignatureSubmitResult[];
    expect(res).toMatchObject({ published: true, added: 1, signatures: { valid: 2, required: 2, needed: 0 } });
    expect(res!.bundle?.sha256).toMatch(/^[0-9a-f]{64}$/);

    const v = (await api.getModelVersion("vad", "1.0.0")) as {
      variants: { variant: string; published: boolean; bundle: { sha256: string } | null }[];
    };
    expect(v.variants[0]).toMatchObject({ variant: "fp32", published: true, bundle: { sha256: res!.bundle!.sha256 } });
    expect((await cli("release", "pending")).stdout.trim()).toBe("no releases wait for signatures");

    // Nothing waits for that manifest any more.
    const late = await cli("release", "upload", file("holder-1.json"));
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/^error NOT_FOUND: .*no release waits for this manifest \(vad@1\.0\.0 fp32/);
  });
});

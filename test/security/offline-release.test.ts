import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { ApiClient, type ApiError } from "../../scripts/fleetctl/api-client.js";
import { ManifestSchema } from "../../shared/schemas/manifest.js";
import { SignatureFileSchema } from "../../shared/schemas/release-signing.js";
import { generateKeyPair } from "../../shared/trust/keys.js";
import { waitForServing } from "../e2e/fleet-harness.js";
import { type AgentProcess, spawnAgent } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";

const run = promisify(execFile);
const FLEETCTL = fileURLToPath(new URL("../../bin/fleetctl.js", import.meta.url));

interface VariantView {
  variant: string;
  bundle: { sha256: string } | null;
  published: boolean;
  pendingSignature: boolean;
  pendingId?: string;
}

/**
 * Offline release signing (issue 7, docs/security.md "Offline release signing"): the server holds
 * no release key; a release is published only after a threshold of release signatures made off the
 * server with `fleetctl release sign` (the real CLI process) is uploaded.
 */
describe("security: offline release signing", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: FleetServer;
  let api: ApiClient;
  let agent: AgentProcess | undefined;
  let pendingId = "";
  const dataDir = () => join(tmp.path, "server");
  const offline = () => join(tmp.path, "offline-keys");
  const fleetctl = (...args: string[]) => run(process.execPath, [FLEETCTL, ...args]);

  const errorOf = (p: Promise<unknown>) =>
    p.then(
      () => null,
      (e: unknown) => e as ApiError,
    );
  const fp32 = async () => {
    const v = (await api.getModelVersion("vad", "1.0.0")) as { variants: VariantView[] };
    return v.variants.find((x) => x.variant === "fp32")!;
  };

  beforeAll(async () => {
    tmp = await makeTempDir("ef-offline-release-");
    // Operator procedure: keys init, then release keys 2-of-2 kept on the offline machine.
    await fleetctl("keys", "init", "--data-dir", dataDir());
    await fleetctl(
      "keys",
      "rotate",
      "release",
      "--data-dir",
      dataDir(),
      "--count",
      "2",
      "--threshold",
      "2",
      "--out-dir",
      offline(),
    );
    expect(existsSync(join(dataDir(), "keys", "release.key"))).toBe(false);
    server = await startFleetServer({
      dataDir: dataDir(),
      httpPort: 0,
      mqttPort: 0,
      offlineRelease: true,
      log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    });
    api = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });
  });
  afterAll(async () => {
    await agent?.kill("SIGTERM");
    await server?.close();
    await tmp?.cleanup();
  });

  it("refuses to start in offline mode while the release key is still on the server", async () => {
    const other = join(tmp.path, "other");
    await fleetctl("keys", "init", "--data-dir", other);
    const err = await startFleetServer({
      dataDir: other,
      httpPort: 0,
      mqttPort: 0,
      offlineRelease: true,
      log: pino({ level: "silent" }),
    }).then(
      (s) => s.close().then(() => null),
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/release\.key is on the server/);
  });

  it("stores an upload unsigned and pending, and refuses to roll it out", async () => {
    const { password } = await api.enrollDevice({ id: "off-1", profile: "generic-x64" });
    agent = await spawnAgent({
      deviceId: "off-1",
      mqttUrl: server.mqttUrl,
      password,
      dataDir: join(tmp.path, "off-1"),
      socketPath: join(tmp.path, "off-1.sock"),
      rootPath: server.rootJsonPath,
      profile: "generic-x64",
    });
    const up = await api.upload(sileroModelPath());
    const created = (await api.createModel({
      name: "vad",
      version: "1.0.0",
      upload: up.sha256,
      samples: sileroSamples(),
      quantize: "none",
    })) as { variants: VariantView[] };
    expect(created.variants).toHaveLength(1);
    expect(created.variants[0]).toMatchObject({
      variant: "fp32",
      bundle: null,
      published: false,
      pendingSignature: true,
    });

    pendingId = created.variants[0]!.pendingId!;
    expect(existsSync(join(dataDir(), "pending", pendingId))).toBe(true);
    const pending = await api.pendingReleases();
    expect(pending.pending.map((p) => [p.kind, p.name, p.variant])).toEqual([["upload", "vad", "fp32"]]);

    const err = await errorOf(
      api.createRollout({ model: "vad", version: "1.0.0", variant: "fp32", target: { deviceIds: ["off-1"] } }),
    );
    expect(err?.code).toBe("RELEASE_NOT_SIGNED");
    expect(err?.status).toBe(409);
    expect((await api.listRollouts()).rollouts).toHaveLength(0);
  });

  it("refuses signatures by a non-release key or over another manifest; below threshold keeps but does not publish", async () => {
    const m = await api.variantManifest("vad", "1.0.0", "fp32");
    expect(m.pendingSignature).toBe(true);
    const file = join(tmp.path, "manifest.json");
    await writeFile(file, JSON.stringify(m));

    // A key the root does not name for the release role (here: a fresh key and the director key).
    const stranger = join(tmp.path, "stranger.key");
    await writeFile(stranger, `${generateKeyPair().secretKeyHex}\n`, { mode: 0o600 });
    const wrong = join(tmp.path, "wrong.json");
    await fleetctl(
      "release",
      "sign",
      file,
      "--key",
      stranger,
      "--key",
      join(dataDir(), "keys", "director.key"),
      "--out",
      wrong,
    );
    const byStranger = await errorOf(
      api.uploadSignatures("vad", "1.0.0", "fp32", JSON.parse(await readFile(wrong, "utf8"))),
    );
    expect(byStranger?.code).toBe("SIGNATURE_THRESHOLD_NOT_MET");

    // One of the two release keys: below the 2-of-2 threshold, even with its signature repeated.
    // The valid signature is kept for the next key holder (k-of-n uploads), nothing is published.
    const half = join(tmp.path, "half.json");
    await fleetctl("release", "sign", file, "--key", join(offline(), "release-v2-1.key"), "--out", half);
    const oneSig = SignatureFileSchema.parse(JSON.parse(await readFile(half, "utf8")));
    expect(oneSig.signatures).toHaveLength(1);
    const below = await api.uploadSignatures("vad", "1.0.0", "fp32", oneSig);
    expect(below).toMatchObject({ published: false, added: 1, bundle: null, signatures: { valid: 1, required: 2 } });
    const duplicated = { ...oneSig, signatures: [oneSig.signatures[0]!, oneSig.signatures[0]!] };
    expect(await api.uploadSignatures("vad", "1.0.0", "fp32", duplicated)).toMatchObject({
      published: false,
      added: 0,
      signatures: { valid: 1, needed: 1 },
    });

    // A threshold of valid signatures over a different manifest (a raised release counter).
    const tampered = join(tmp.path, "tampered.json");
    const body = ManifestSchema.parse(m.manifest);
    body.releaseCounter += 100;
    await writeFile(tampered, JSON.stringify(body));
    await fleetctl(
      "release",
      "sign",
      tampered,
      "--key",
      join(offline(), "release-v2-1.key"),
      "--key",
      join(offline(), "release-v2-2.key"),
    );
    const mismatch = await errorOf(
      api.uploadSignatures("vad", "1.0.0", "fp32", JSON.parse(await readFile(tampered, "utf8"))),
    );
    expect(mismatch?.code).toBe("MANIFEST_MISMATCH");

    expect(await fp32()).toMatchObject({ published: false, pendingSignature: true, bundle: null });
    expect((await api.pendingReleases()).pending).toHaveLength(1);
  });

  it("publishes after k-of-n offline signatures, and a real agent installs and commits it", async () => {
    const file = join(tmp.path, "manifest.json");
    // Each key holder signs in turn, appending to the same file.
    const first = await fleetctl("release", "sign", file, "--key", join(offline(), "release-v2-1.key"));
    expect(first.stdout).toMatch(/1 signature/);
    const second = await fleetctl("release", "sign", file, "--key", join(offline(), "release-v2-2.key"));
    expect(second.stdout).toMatch(/2 signature/);

    const res = await api.uploadSignatures("vad", "1.0.0", "fp32", JSON.parse(await readFile(file, "utf8")));
    expect(res).toMatchObject({ published: true, variant: "fp32" });
    const v = await fp32();
    expect(v).toMatchObject({ published: true, pendingSignature: false });
    expect(v.bundle?.sha256).toBe((res as { bundle: { sha256: string } }).bundle.sha256);
    expect((await api.pendingReleases()).pending).toHaveLength(0);
    // Signing twice is refused: the release is no longer pending.
    const again = await errorOf(api.uploadSignatures("vad", "1.0.0", "fp32", JSON.parse(await readFile(file, "utf8"))));
    expect(again?.code).toBe("CONFLICT");

    const rollout = await api.createRollout({
      model: "vad",
      version: "1.0.0",
      variant: "fp32",
      target: { deviceIds: ["off-1"] },
      healthPolicy: { probationSeconds: 1 },
    });
    const final = await api.waitForRollout(rollout.id, { timeoutMs: 120_000 });
    expect(final.status, JSON.stringify(final.devices)).toBe("completed");
    expect(final.counts).toMatchObject({ total: 1, committed: 1, failed: 0 });
    const client = await waitForServing(agent!, "vad");
    const ready = await client.raw("GET", "/v2/models/vad/ready");
    expect(ready.status).toBe(200);
    // The pending payload directory is gone once published.
    expect(existsSync(join(dataDir(), "pending", pendingId))).toBe(false);
  });
});

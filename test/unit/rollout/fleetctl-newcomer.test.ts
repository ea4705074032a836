import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { ApiError, unreachable } from "../../../scripts/fleetctl/api-client.js";
import { writeSecretFile } from "../../../scripts/fleetctl/secret-file.js";

const run = promisify(execFile);
const FLEETCTL = fileURLToPath(new URL("../../../bin/fleetctl.js", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "fleetctl-newcomer-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A port nothing listens on: bound by the OS, then released. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Issue 23, "a newcomer's first hour": what fleetctl says before any server is involved. */
describe("fleetctl for a newcomer", () => {
  it("--help names EDGEFLEET_SERVER and EDGEFLEET_TOKEN", async () => {
    const { stdout } = await run(process.execPath, [FLEETCTL, "--help"], { env: { ...process.env } });
    // Commander wraps long option lines: compare with runs of whitespace collapsed.
    const flat = stdout.replace(/\s+/g, " ");
    expect(flat).toContain('--server <url> fleet server URL (default: "http://127.0.0.1:8080", env: EDGEFLEET_SERVER)');
    expect(flat).toContain("--token <token> API bearer token (env: EDGEFLEET_TOKEN)");
    expect(stdout).toContain("EDGEFLEET_SERVER  fleet server URL when --server is not given");
  });

  it("an unreachable server is an error naming its URL and the socket's cause, not `fetch failed`", async () => {
    const port = await closedPort();
    const err = await run(process.execPath, [FLEETCTL, "devices", "list"], {
      env: { ...process.env, EDGEFLEET_SERVER: `http://127.0.0.1:${port}`, EDGEFLEET_TOKEN: "t" },
    }).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain(`error UNREACHABLE: cannot reach the fleet server at http://127.0.0.1:${port}`);
    expect(err?.stderr).toContain("ECONNREFUSED");
    expect(err?.stderr).toContain("EDGEFLEET_SERVER");
  });

  it("models push needs no --samples, and says what the smoke test will run on before uploading", async () => {
    const port = await closedPort();
    const model = join(tmp, "m.onnx");
    writeFileSync(model, "not uploaded: the server is unreachable");
    const err = await run(process.execPath, [FLEETCTL, "models", "push", model, "--name", "m", "--version", "1.0.0"], {
      env: { ...process.env, EDGEFLEET_SERVER: `http://127.0.0.1:${port}`, EDGEFLEET_TOKEN: "t" },
    }).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.stderr).not.toContain("required option");
    expect(err?.stderr).toContain("no --samples: the server generates synthetic smoke-test inputs");
    expect(err?.stderr).toContain("error UNREACHABLE");
  });

  it("unreachable() unwraps undici's `fetch failed` to the innermost causes", () => {
    const inner = Object.assign(new Error("getaddrinfo ENOTFOUND fleet.invalid"), { code: "ENOTFOUND" });
    const e = unreachable(
      new URL("https://fleet.invalid:8443/v1/devices"),
      new TypeError("fetch failed", { cause: inner }),
    );
    expect(e.message).toBe(
      "cannot reach the fleet server at https://fleet.invalid:8443 (/v1/devices): getaddrinfo ENOTFOUND fleet.invalid. Check --server or EDGEFLEET_SERVER.",
    );
  });
});

describe("--password-file (writeSecretFile)", () => {
  it("writes the secret to a new file readable by its owner only", async () => {
    const path = join(tmp, "pw-new");
    const r = await writeSecretFile(path, async () => ({ value: "s3cret", result: 42 }));
    expect(r).toBe(42);
    expect(readFileSync(path, "utf8")).toBe("s3cret\n");
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("refuses an existing file before producing the secret, and leaves the file as it was", async () => {
    const path = join(tmp, "pw-existing");
    writeFileSync(path, "keep me");
    let produced = false;
    const err = await writeSecretFile(path, async () => {
      produced = true;
      return { value: "x", result: 0 };
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).message).toContain("already exists (refusing to overwrite a secret)");
    expect(produced).toBe(false);
    expect(readFileSync(path, "utf8")).toBe("keep me");
  });

  it("removes the claimed file when producing the secret fails (a retry finds the path free)", async () => {
    const path = join(tmp, "pw-failed");
    const err = await writeSecretFile(path, async () => {
      throw new ApiError(409, "CONFLICT", "device exists");
    }).catch((e: unknown) => e);
    expect((err as ApiError).code).toBe("CONFLICT");
    expect(() => statSync(path)).toThrow(/ENOENT/);
  });
});

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { keysIdentify, keysInit } from "../../../scripts/fleetctl/keys-commands.js";
import { generateKeyPair } from "../../../shared/trust/keys.js";

const dir = mkdtempSync(join(tmpdir(), "ef-keys-id-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("fleetctl keys id", () => {
  const data = join(dir, "data");
  const root = keysInit({ dataDir: data, rootCount: 2, rootThreshold: 2, validityDays: 30 });
  const stranger = join(dir, "stranger.key");
  writeFileSync(stranger, `${generateKeyPair().secretKeyHex}\n`, { mode: 0o600 });

  it("names each key file's key id and the roles of the root that list it", () => {
    const ids = keysIdentify([join(data, "keys", "release.key"), join(data, "keys", "director.key"), stranger], root);
    expect(ids.map((k) => k.roles)).toEqual([["release"], ["director"], []]);
    expect(ids[0]?.keyid).toBe(root.roles.release.keyids[0]);
    expect(ids[1]?.keyid).toBe(root.roles.director.keyids[0]);
    expect(root.keys[ids[2]?.keyid ?? ""]).toBeUndefined();
  });

  it("works from the CLI, reading the data dir's root.json; never prints the secret", () => {
    const bin = new URL("../../../bin/fleetctl.js", import.meta.url).pathname;
    const key = join(data, "keys", "release.key");
    const out = execFileSync(process.execPath, [bin, "keys", "id", key, stranger, "--data-dir", data, "--json"], {
      encoding: "utf8",
    });
    const parsed = JSON.parse(out) as { rootVersion: number; keys: { keyid: string; roles: string[] }[] };
    expect(parsed.rootVersion).toBe(1);
    expect(parsed.keys.map((k) => [k.keyid, k.roles])).toEqual([
      [root.roles.release.keyids[0], ["release"]],
      [expect.any(String), []],
    ]);
    const text = execFileSync(process.execPath, [bin, "keys", "id", stranger, "--data-dir", data], {
      encoding: "utf8",
    });
    expect(text).toMatch(/\(not in root v1\)/);
    expect(text).not.toContain(execFileSync("cat", [stranger], { encoding: "utf8" }).trim());
  });

  it("a file that is not a key is a clear error, not a crash", () => {
    const bad = join(dir, "bad.key");
    writeFileSync(bad, "not hex\n");
    expect(() => keysIdentify([bad], null)).toThrow(`${bad}: not a key file (ed25519 secret key must be 64 bytes)`);
  });
});

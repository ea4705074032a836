import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Envelope } from "../../shared/schemas/trust.js";
import { type Root, SignedRootSchema } from "../../shared/schemas/trust.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import { generateKeyPair, type KeyPair, keyPairFromSecretHex } from "../../shared/trust/keys.js";
import { walkRootChain } from "../../shared/trust/root-chain.js";

/** Everything secret or trust-related the server needs, loaded (or created on first start) from dataDir. */
export interface ServerKeys {
  /** Null in offline release mode: manifests are signed off the server (docs/security.md). */
  release: KeyPair | null;
  director: KeyPair;
  root: Root;
  signedRoot: Envelope<Root>;
  /**
   * Every root version, oldest first, ending with `signedRoot`: what the retained trust topic
   * carries so a device pinned to any older version can walk forward (architecture.md §3, TUF 5.3).
   */
  rootChain: Envelope<Root>[];
  rootJsonPath: string;
  adminToken: string;
  serverMqtt: { username: string; password: string };
}

/** Not a valid device id (DeviceIdSchema forbids a leading `$`), so no device can impersonate it. */
export const SERVER_MQTT_USERNAME = "$fleet-server";
const ROOT_VALIDITY_MS = 10 * 365 * 24 * 3600 * 1000;

const ServerMqttSchema = z.object({ username: z.string().min(1), password: z.string().min(16) });

/**
 * Creates `path` holding `content` unless it already exists, and returns what the file holds: ours,
 * or what a replica starting at the same moment on the same shared data directory wrote first
 * (issue 14). `link` fails when the name exists, so of two creators exactly one wins and the other
 * adopts its keys, where a rename would let the last one silently replace keys the first already
 * uses. Mode 0600 for secrets (chmod too: the umask might have narrowed nothing).
 */
function createOnce(path: string, content: string, mode = 0o600): string {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  writeFileSync(tmp, content, { mode });
  chmodSync(tmp, mode);
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  } finally {
    unlinkSync(tmp);
  }
  return readFileSync(path, "utf8");
}

function loadOrCreateKey(path: string): KeyPair {
  if (existsSync(path)) {
    try {
      return keyPairFromSecretHex(readFileSync(path, "utf8").trim());
    } catch (err) {
      throw new EdgeFleetError("INTERNAL", `key file ${path} is unreadable: ${(err as Error).message}`);
    }
  }
  const kp = generateKeyPair();
  return keyPairFromSecretHex(createOnce(path, `${kp.secretKeyHex}\n`).trim());
}

function loadOrCreateSecret(path: string): string {
  if (existsSync(path)) return readFileSync(path, "utf8").trim();
  return createOnce(path, `${randomBytes(32).toString("base64url")}\n`).trim();
}

/**
 * Loads the server's keys. With `offlineRelease`, the release key stays off this machine: root.json
 * must already exist (`fleetctl keys init`, then move `keys/release.key` away) and the server refuses
 * to start if `keys/release.key` is still here, so the mode cannot silently degrade to online signing.
 */
export function loadOrCreateKeys(dataDir: string, now: Date, opts: { offlineRelease?: boolean } = {}): ServerKeys {
  const keysDir = join(dataDir, "keys");
  const rootDir = join(keysDir, "root");
  // The root key is the offline trust anchor: it lives in its own 0700 directory so an operator
  // can move it off the machine without touching the online release/director keys.
  mkdirSync(rootDir, { recursive: true, mode: 0o700 });
  chmodSync(keysDir, 0o700);
  chmodSync(rootDir, 0o700);

  const releasePath = join(keysDir, "release.key");
  const rootJsonPath = join(dataDir, "root.json");
  if (opts.offlineRelease) {
    if (!existsSync(rootJsonPath)) {
      throw new EdgeFleetError(
        "VALIDATION_FAILED",
        `offline release mode needs ${rootJsonPath}: create it with fleetctl keys init, then move keys/release.key off the server`,
      );
    }
    if (existsSync(releasePath)) {
      throw new EdgeFleetError(
        "VALIDATION_FAILED",
        `offline release mode, but ${releasePath} is on the server: move it to the offline signing machine`,
      );
    }
  } else if (existsSync(rootJsonPath) && !existsSync(releasePath)) {
    throw new EdgeFleetError(
      "VALIDATION_FAILED",
      `${releasePath} is missing: restore it, or start with --offline-release to sign releases offline`,
    );
  }
  const release = opts.offlineRelease ? null : loadOrCreateKey(releasePath);
  const director = loadOrCreateKey(join(keysDir, "director.key"));

  let signedRoot: Envelope<Root>;
  if (existsSync(rootJsonPath)) {
    const parsed = SignedRootSchema.safeParse(JSON.parse(readFileSync(rootJsonPath, "utf8")));
    if (!parsed.success) throw new EdgeFleetError("INTERNAL", `root.json invalid: ${parsed.error.message}`);
    signedRoot = parsed.data;
  } else {
    const rootKey = loadOrCreateKey(join(rootDir, "root.key"));
    if (!release) throw new EdgeFleetError("INTERNAL", "no release key for a new root");
    const root: Root = {
      _type: "root",
      version: 1,
      expires: new Date(now.getTime() + ROOT_VALIDITY_MS).toISOString(),
      keys: {
        [rootKey.keyid]: rootKey.publicKey,
        [release.keyid]: release.publicKey,
        [director.keyid]: director.publicKey,
      },
      roles: {
        root: { keyids: [rootKey.keyid], threshold: 1 },
        release: { keyids: [release.keyid], threshold: 1 },
        director: { keyids: [director.keyid], threshold: 1 },
      },
    };
    // root.json is public (devices pin it at provisioning), so ordinary permissions. A replica that
    // lost the race reads the winner's (same keys, another `expires`).
    const written = createOnce(rootJsonPath, `${JSON.stringify(signEnvelope(root, [rootKey]), null, 2)}\n`, 0o644);
    signedRoot = SignedRootSchema.parse(JSON.parse(written));
  }
  const rootChain = loadRootChain(join(dataDir, ROOT_CHAIN_FILE), signedRoot);
  if (release && !signedRoot.signed.roles.release.keyids.includes(release.keyid)) {
    throw new EdgeFleetError("INTERNAL", "release key on disk is not named by root.json");
  }
  if (!signedRoot.signed.roles.director.keyids.includes(director.keyid)) {
    throw new EdgeFleetError("INTERNAL", "director key on disk is not named by root.json");
  }

  const adminToken = loadOrCreateSecret(join(dataDir, "admin-token"));
  const mqttPath = join(dataDir, "server-mqtt.json");
  let serverMqtt: { username: string; password: string };
  if (existsSync(mqttPath)) {
    serverMqtt = ServerMqttSchema.parse(JSON.parse(readFileSync(mqttPath, "utf8")));
  } else {
    const fresh = { username: SERVER_MQTT_USERNAME, password: randomBytes(32).toString("base64url") };
    serverMqtt = ServerMqttSchema.parse(JSON.parse(createOnce(mqttPath, `${JSON.stringify(fresh)}\n`)));
  }
  return { release, director, root: signedRoot.signed, signedRoot, rootChain, rootJsonPath, adminToken, serverMqtt };
}

/** Written by `fleetctl keys rotate` / `fleetctl root publish`; absent until the first rotation. */
export const ROOT_CHAIN_FILE = "root-chain.json";

/**
 * Reads `root-chain.json` and checks that it really chains, version by version, from its first
 * entry to the current root.json; a server must never publish a chain its own devices would refuse.
 */
function loadRootChain(path: string, current: Envelope<Root>): Envelope<Root>[] {
  if (!existsSync(path)) return [current];
  const parsed = z
    .array(SignedRootSchema)
    .min(1)
    .safeParse(JSON.parse(readFileSync(path, "utf8")));
  if (!parsed.success) throw new EdgeFleetError("INTERNAL", `${ROOT_CHAIN_FILE} invalid: ${parsed.error.message}`);
  const chain = parsed.data;
  const reached = walkRootChain(chain[0]!.signed, chain.slice(1));
  if (reached.version !== current.signed.version) {
    throw new EdgeFleetError(
      "INTERNAL",
      `${ROOT_CHAIN_FILE} ends at root v${reached.version} but root.json is v${current.signed.version}`,
    );
  }
  return chain;
}

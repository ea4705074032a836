import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import { z } from "zod";
import { ManifestSchema } from "../../shared/schemas/manifest.js";
import { type Envelope, type Root, RootSchema, SignatureSchema, SignedRootSchema } from "../../shared/schemas/trust.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import { generateKeyPair, type KeyPair, keyPairFromSecretHex } from "../../shared/trust/keys.js";
import { walkRootChain } from "../../shared/trust/root-chain.js";
import { addSignatures, nextRoot, rootSigners } from "../../shared/trust/root-edit.js";

/**
 * Offline key management (issue 7, docs/security.md "Keys"). Works on files only, never on the API:
 * root keys belong on a machine that is not the fleet server. Layout (the server's data dir D):
 *   D/root.json            current signed root (what new devices pin)
 *   D/root-chain.json      every root version, oldest first (what the trust topic carries)
 *   D/keys/release.key     online release key (absent when releases are signed offline)
 *   D/keys/director.key    online director key
 *   R/*.key                root keys (R = --root-keys, default D/keys/root), 0600 in a 0700 dir
 * The server picks up a new root at its next start.
 */

const DAY = 24 * 3600_000;

function writeSecret(path: string, content: string): void {
  writeFileSync(`${path}.tmp`, content, { mode: 0o600 });
  chmodSync(`${path}.tmp`, 0o600);
  renameSync(`${path}.tmp`, path);
}
function writePublic(path: string, value: unknown): void {
  writeFileSync(`${path}.tmp`, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o644 });
  renameSync(`${path}.tmp`, path);
}
function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}
function readKey(path: string): KeyPair {
  return keyPairFromSecretHex(readFileSync(path, "utf8").trim());
}
function readKeysIn(dir: string): KeyPair[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".key"))
    .sort()
    .map((f) => readKey(join(dir, f)));
}
function readEnvelope(path: string): Envelope<Root> {
  const json = JSON.parse(readFileSync(path, "utf8")) as unknown;
  return SignedRootSchema.parse(json) as Envelope<Root>;
}
function readChain(dataDir: string): Envelope<Root>[] {
  const path = join(dataDir, "root-chain.json");
  if (existsSync(path))
    return z.array(SignedRootSchema).parse(JSON.parse(readFileSync(path, "utf8"))) as Envelope<Root>[];
  return [readEnvelope(join(dataDir, "root.json"))];
}
const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
};

export interface KeysInitOptions {
  dataDir: string;
  rootKeysDir?: string;
  rootCount: number;
  rootThreshold: number;
  validityDays: number;
  now?: Date;
}

/** Creates root keys (k-of-n), release and director keys, and root v1 signed by every root key. */
export function keysInit(o: KeysInitOptions): Root {
  const rootDir = o.rootKeysDir ?? join(o.dataDir, "keys", "root");
  if (existsSync(join(o.dataDir, "root.json"))) throw new Error(`${o.dataDir}/root.json exists: use keys rotate`);
  if (o.rootThreshold > o.rootCount) throw new Error("root threshold exceeds root key count");
  privateDir(join(o.dataDir, "keys"));
  privateDir(rootDir);
  const rootKeys = Array.from({ length: o.rootCount }, () => generateKeyPair());
  for (const [i, k] of rootKeys.entries()) writeSecret(join(rootDir, `root-v1-${i + 1}.key`), `${k.secretKeyHex}\n`);
  const release = generateKeyPair();
  const director = generateKeyPair();
  writeSecret(join(o.dataDir, "keys", "release.key"), `${release.secretKeyHex}\n`);
  writeSecret(join(o.dataDir, "keys", "director.key"), `${director.secretKeyHex}\n`);
  const now = o.now ?? new Date();
  const root: Root = {
    _type: "root",
    version: 1,
    expires: new Date(now.getTime() + o.validityDays * DAY).toISOString(),
    keys: Object.fromEntries([...rootKeys, release, director].map((k) => [k.keyid, k.publicKey])),
    roles: {
      root: { keyids: rootKeys.map((k) => k.keyid), threshold: o.rootThreshold },
      release: { keyids: [release.keyid], threshold: 1 },
      director: { keyids: [director.keyid], threshold: 1 },
    },
  };
  const signed = signEnvelope(root, rootKeys);
  writePublic(join(o.dataDir, "root.json"), signed);
  writePublic(join(o.dataDir, "root-chain.json"), [signed]);
  return root;
}

/** Verifies `next` chains from the current root, then makes it current (root.json + chain). */
export function rootPublish(dataDir: string, next: Envelope<Root>): Root {
  const chain = readChain(dataDir);
  const current = chain.at(-1)!.signed;
  const reached = walkRootChain(current, [next]);
  if (reached.version !== current.version + 1)
    throw new Error(`root v${next.signed.version} does not follow v${current.version}`);
  writePublic(join(dataDir, "root-chain.json"), [...chain, next]);
  writePublic(join(dataDir, "root.json"), next);
  return reached;
}

export interface KeysRotateOptions {
  dataDir: string;
  role: "root" | "release" | "director";
  rootKeysDir?: string;
  count: number;
  threshold: number;
  validityDays: number;
  /** Release role only: write the new keys here (the offline signing machine), not to the server. */
  outDir?: string;
  now?: Date;
}

/**
 * New keys for `role`, root v(N+1) naming them, signed by every available old and new root key.
 * Old private keys are kept beside the new ones with a `.v<N>` suffix until the operator destroys them.
 */
export function keysRotate(o: KeysRotateOptions): Root {
  const rootDir = o.rootKeysDir ?? join(o.dataDir, "keys", "root");
  const current = readChain(o.dataDir).at(-1)!;
  const n = current.signed.version;
  const fresh = Array.from({ length: o.count }, () => generateKeyPair());
  const oldRootKeys = rootSigners(current.signed, readKeysIn(rootDir));
  const now = o.now ?? new Date();
  const next = nextRoot(
    current.signed,
    { role: o.role, keys: fresh, threshold: o.threshold },
    new Date(now.getTime() + o.validityDays * DAY),
  );
  const signers = o.role === "root" ? [...oldRootKeys, ...fresh] : oldRootKeys;
  const env = signEnvelope(RootSchema.parse(next), signers);
  // Publish first (it verifies the thresholds), then move key files: a failed rotation changes nothing.
  const reached = rootPublish(o.dataDir, env);
  if (o.role === "root") {
    privateDir(join(rootDir, "retired"));
    for (const f of readdirSync(rootDir).filter((x) => x.endsWith(".key"))) {
      renameSync(join(rootDir, f), join(rootDir, "retired", f));
    }
    for (const [i, k] of fresh.entries()) {
      writeSecret(
        join(rootDir, `root-v${n + 1}-${i + 1}.key`),
        `${k.secretKeyHex}
`,
      );
    }
  } else if (o.outDir !== undefined) {
    // Offline release keys (k-of-n): they never touch the server's data dir.
    privateDir(o.outDir);
    for (const [i, k] of fresh.entries()) {
      writeSecret(join(o.outDir, `release-v${n + 1}-${i + 1}.key`), `${k.secretKeyHex}\n`);
    }
    const online = join(o.dataDir, "keys", "release.key");
    if (existsSync(online)) renameSync(online, `${online}.v${n}`);
  } else {
    if (o.count !== 1) throw new Error("the server signs with one online key per role");
    const path = join(o.dataDir, "keys", `${o.role}.key`);
    if (existsSync(path)) renameSync(path, `${path}.v${n}`);
    writeSecret(path, `${fresh[0]!.secretKeyHex}\n`);
  }
  return reached;
}

/** One key file identified: its key id and the roles of `root` that list it (empty: not in that root). */
export interface KeyIdentity {
  file: string;
  keyid: string;
  roles: string[];
}

/**
 * Which key is this file? Key holders with k-of-n custody compare key ids with what a pending
 * release or a root says is missing; a file name says nothing. Reads the secret key only to derive
 * the public key; prints nothing secret.
 */
export function keysIdentify(files: readonly string[], root: Root | null): KeyIdentity[] {
  return files.map((file) => {
    let keyid: string;
    try {
      keyid = readKey(file).keyid;
    } catch (err) {
      throw new Error(`${file}: not a key file (${(err as Error).message})`);
    }
    const roles = root
      ? Object.entries(root.roles)
          .filter(([, role]) => role.keyids.includes(keyid))
          .map(([name]) => name)
      : [];
    return { file, keyid, roles };
  });
}

/** One result line: JSON with fleetctl's global --json (issue 21: every command), else the human text. */
function say(cmd: Command, human: string, json: Record<string, unknown>): void {
  console.log(cmd.optsWithGlobals<{ json?: boolean }>().json === true ? JSON.stringify(json, null, 2) : human);
}

export function registerKeysCommands(program: Command): void {
  const keys = program.command("keys").description("offline key management (files, not the API)");
  keys
    .command("id <files...>")
    .description("print each key file's key id, and its roles in the current root with --data-dir or --root")
    .option("--data-dir <dir>", "the fleet server's data directory (reads <dir>/root.json)")
    .option("--root <file>", "a signed root document (root.json)")
    .action((files: string[], o: { dataDir?: string; root?: string }, cmd: Command) => {
      // --json is fleetctl's global option (main.ts).
      const json = cmd.optsWithGlobals<{ json?: boolean }>().json === true;
      const rootFile = o.root ?? (o.dataDir !== undefined ? join(o.dataDir, "root.json") : undefined);
      const root = rootFile !== undefined ? readEnvelope(rootFile).signed : null;
      const ids = keysIdentify(files, root);
      if (json) {
        console.log(JSON.stringify({ rootVersion: root?.version ?? null, keys: ids }, null, 2));
        return;
      }
      for (const k of ids) {
        const where =
          root === null ? "" : k.roles.length > 0 ? `  ${k.roles.join(", ")}` : `  (not in root v${root.version})`;
        console.log(`${k.keyid}  ${k.file}${where}`);
      }
    });
  keys
    .command("init")
    .description("create root (k-of-n), release and director keys and root v1")
    .requiredOption("--data-dir <dir>", "the fleet server's data directory (before its first start)")
    .option("--root-keys <dir>", "where root keys go (default <data-dir>/keys/root; move them offline)")
    .option("--root-count <n>", "number of root keys", int, 1)
    .option("--root-threshold <k>", "root signatures required", int, 1)
    .option("--validity-days <days>", "root expiry", int, 365)
    .action(
      (
        o: { dataDir: string; rootKeys?: string; rootCount: number; rootThreshold: number; validityDays: number },
        cmd: Command,
      ) => {
        const root = keysInit({ ...o, ...(o.rootKeys ? { rootKeysDir: o.rootKeys } : {}) });
        const { threshold, keyids } = root.roles.root;
        say(cmd, `root v1: ${threshold} of ${keyids.length} root keys; root.json written`, {
          rootVersion: root.version,
          rootThreshold: threshold,
          rootKeyIds: keyids,
        });
      },
    );
  keys
    .command("rotate <role>")
    .description("new keys for root | release | director; writes root v(N+1) signed by old and new root keys")
    .requiredOption("--data-dir <dir>", "the fleet server's data directory")
    .option("--root-keys <dir>", "directory holding the current root keys")
    .option("--count <n>", "number of new keys", int, 1)
    .option("--threshold <k>", "signatures required for the role", int, 1)
    .option("--validity-days <days>", "new root expiry", int, 365)
    .option(
      "--out-dir <dir>",
      "release only: write the new keys here for offline signing (start the server with --offline-release)",
    )
    .action(
      (
        role: string,
        o: {
          dataDir: string;
          rootKeys?: string;
          count: number;
          threshold: number;
          validityDays: number;
          outDir?: string;
        },
        cmd: Command,
      ) => {
        if (role !== "root" && role !== "release" && role !== "director")
          throw new InvalidArgumentError(`unknown role ${role}`);
        if (o.outDir !== undefined && role !== "release")
          throw new InvalidArgumentError("--out-dir is for release keys");
        const root = keysRotate({
          ...o,
          role,
          ...(o.rootKeys ? { rootKeysDir: o.rootKeys } : {}),
          ...(o.outDir !== undefined ? { outDir: o.outDir } : {}),
        });
        say(cmd, `root v${root.version} written; restart the fleet server to publish it`, {
          role,
          rootVersion: root.version,
          keyIds: root.roles[role].keyids,
          threshold: root.roles[role].threshold,
        });
      },
    );

  const root = program.command("root").description("root metadata, for split custody of root keys");
  root
    .command("sign <file>")
    .description("add a signature to a signed root document (each key holder signs in turn)")
    .requiredOption("--key <file>", "root key file")
    .action((file: string, o: { key: string }, cmd: Command) => {
      const env = addSignatures(readEnvelope(file), [readKey(o.key)]);
      writePublic(file, env);
      say(cmd, `${file}: ${env.signatures.length} signatures`, { file, signatures: env.signatures.length });
    });
  root
    .command("publish <file>")
    .description("verify a new root version chains from the current one and make it current")
    .requiredOption("--data-dir <dir>", "the fleet server's data directory")
    .action((file: string, o: { dataDir: string }, cmd: Command) => {
      const r = rootPublish(o.dataDir, readEnvelope(file));
      say(cmd, `root v${r.version} is current; restart the fleet server to publish it`, { rootVersion: r.version });
    });

  program
    .command("release")
    .description("offline release signing")
    .command("sign <manifest>")
    .description(
      "sign a pending release's manifest (JSON from GET /v1/releases/pending/{id}, a bare manifest, or an envelope another key holder already signed: signatures are appended)",
    )
    .requiredOption("--key <file>", "release key file (repeatable)", (v: string, prev: string[] = []) => [...prev, v])
    .option("--out <file>", "signed envelope to write (default: rewrite <manifest> in place)")
    .action((manifest: string, o: { key: string[]; out?: string }, cmd: Command) => {
      const env = releaseSign(JSON.parse(readFileSync(manifest, "utf8")) as unknown, o.key.map(readKey));
      const out = o.out ?? manifest;
      writePublic(out, env);
      const human = `${out}: ${env.signatures.length} signature(s); upload it with fleetctl release upload ${out}`;
      say(cmd, human, { file: out, signatures: env.signatures.length });
    });
}

/**
 * Adds release signatures to a manifest. Accepts a bare manifest, the server's pending view
 * (`{ manifest }`) or an envelope (`{ signed, signatures }`): existing signatures are kept and a key
 * that already signed is not added twice (k-of-n custody: each holder signs in turn).
 */
export function releaseSign(doc: unknown, keys: KeyPair[]): Envelope<unknown> {
  const o = (doc ?? {}) as { signed?: unknown; manifest?: unknown; signatures?: unknown };
  const body = o.signed ?? o.manifest ?? doc;
  ManifestSchema.parse(body);
  const existing = o.signed !== undefined ? z.array(SignatureSchema).parse(o.signatures ?? []) : [];
  const have = new Set(existing.map((s) => s.keyid));
  const added = signEnvelope(
    body,
    keys.filter((k) => !have.has(k.keyid)),
  ).signatures;
  return { signed: body, signatures: [...existing, ...added] };
}

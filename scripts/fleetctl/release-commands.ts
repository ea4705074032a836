import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import type { z } from "zod";
import { canonicalBytes } from "../../shared/canonical-json.js";
import { sha256Hex } from "../../shared/hash.js";
import { ManifestSchema } from "../../shared/schemas/manifest.js";
import {
  PendingReleaseListSchema,
  type PendingReleaseView,
  SignatureFileSchema,
  type SignatureStatus,
  type SignatureSubmitResult,
  SignatureSubmitResultSchema,
} from "../../shared/schemas/release-signing.js";
import type { Signature } from "../../shared/schemas/trust.js";
import { type ApiClient, ApiError } from "./api-client.js";
import { formatBytes } from "./progress.js";

/**
 * `fleetctl release pending` and `fleetctl release upload` (offline release signing,
 * docs/security.md): what waits for signatures, and uploading the files `fleetctl release sign`
 * wrote. The server keeps valid signatures across uploads, so k key holders may each upload
 * their own file, in any order. `release sign` itself works on files only (keys-commands.ts).
 */
export interface ReleaseCommandDeps {
  client(cmd: Command): ApiClient;
  isJson(cmd: Command): boolean;
}

/** One signature file, checked: the manifest exactly as signed and its signatures. */
export interface SignatureFile {
  file: string;
  /** Pending release id: SHA-256 of the manifest's canonical JSON (what the server derives too). */
  id: string;
  signed: Record<string, unknown>;
  signatures: Signature[];
}

const fileError = (file: string, message: string) => new ApiError(0, "VALIDATION_FAILED", `${file}: ${message}`);

function issuesOf(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length > 0 ? `${i.path.join(".")}: ` : ""}${i.message}`)
    .join("; ");
}

/**
 * Parses what `fleetctl release sign` writes. The manifest is kept as read (not as re-serialized
 * by zod, which drops unknown keys): its canonical bytes are what was signed.
 */
export function parseSignatureFile(file: string, text: string): SignatureFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw fileError(file, `not JSON (${(err as Error).message})`);
  }
  const o = (json ?? {}) as Record<string, unknown>;
  if (typeof o === "object" && o.signed === undefined && (o.manifest !== undefined || o._type === "manifest")) {
    throw fileError(
      file,
      `holds an unsigned manifest: sign it first (fleetctl release sign --key <release.key> ${file})`,
    );
  }
  const parsed = SignatureFileSchema.safeParse(json);
  if (!parsed.success) {
    throw fileError(file, `not a signed release manifest (${issuesOf(parsed.error)})`);
  }
  const manifest = ManifestSchema.safeParse(parsed.data.signed);
  if (!manifest.success) throw fileError(file, `signed: not a release manifest (${issuesOf(manifest.error)})`);
  const signed = (json as { signed: Record<string, unknown> }).signed;
  return { file, id: sha256Hex(canonicalBytes(signed)), signed, signatures: parsed.data.signatures };
}

/** Files signing the same manifest become one upload; a signature appearing twice is sent once. */
export function mergeSignatureFiles(files: SignatureFile[]): (SignatureFile & { files: string[] })[] {
  const byId = new Map<string, SignatureFile & { files: string[] }>();
  for (const f of files) {
    const merged = byId.get(f.id) ?? { ...f, signatures: [], files: [] };
    merged.files.push(f.file);
    for (const s of f.signatures) {
      if (!merged.signatures.some((x) => x.keyid === s.keyid && x.sig === s.sig)) merged.signatures.push(s);
    }
    byId.set(f.id, merged);
  }
  return [...byId.values()];
}

const short = (hex: string) => `${hex.slice(0, 16)}…`;
const what = (r: { name: string; version: string; variant: string; kind: string; releaseCounter: number }) =>
  `${r.name}@${r.version} ${r.variant} (${r.kind}, release ${r.releaseCounter})`;

function missingLine(s: SignatureStatus): string {
  if (s.needed === 0) return "enough signatures";
  const from = s.missing.map(short).join(", ");
  return `still missing ${s.needed} signature${s.needed === 1 ? "" : "s"}, from ${s.needed === s.missing.length ? "" : "any of "}${from}`;
}

/** The human view of `GET /v1/releases/pending`. */
export function formatPending(list: PendingReleaseView[]): string[] {
  if (list.length === 0) return ["no releases wait for signatures"];
  const lines: string[] = [];
  for (const p of list) {
    lines.push(`${what(p)}  signatures ${p.signatures.valid}/${p.signatures.required}`);
    lines.push(`  sign      manifest ${p.id} (SHA-256 of its canonical JSON)`);
    if (p.signatures.signedBy.length > 0) lines.push(`  signed by ${p.signatures.signedBy.map(short).join(", ")}`);
    lines.push(`  ${missingLine(p.signatures)}`);
  }
  lines.push(
    "to sign: fleetctl release pending --save DIR; on the signing machine fleetctl release sign --key KEY DIR/FILE; then fleetctl release upload DIR/FILE",
  );
  return lines;
}

/** The human view of one upload's outcome. */
export function formatSubmit(r: SignatureSubmitResult, files: string[]): string[] {
  const added = `${r.added} new signature${r.added === 1 ? "" : "s"} from ${files.join(", ")}`;
  if (r.published && r.bundle) {
    return [
      `${what(r)}: ${added}; ${r.signatures.valid}/${r.signatures.required} — published`,
      `  bundle ${r.bundle.sha256} ${formatBytes(r.bundle.size)}`,
    ];
  }
  return [
    `${what(r)}: ${added}; ${r.signatures.valid}/${r.signatures.required} — not published yet`,
    `  ${missingLine(r.signatures)}`,
  ];
}

/** A file name for a pending release's manifest: readable, unique by id. */
export function pendingFileName(p: PendingReleaseView): string {
  return `${p.name}-${p.version}-${p.variant}-${p.kind}-${p.id.slice(0, 12)}.json`;
}

async function listPending(api: ApiClient): Promise<PendingReleaseView[]> {
  const parsed = PendingReleaseListSchema.safeParse(await api.pendingReleases());
  if (!parsed.success) throw new ApiError(0, "BAD_RESPONSE", `pending releases: ${issuesOf(parsed.error)}`);
  return parsed.data.pending;
}

/** Uploads one merged signature file to the release it signs, or says why there is none. */
async function submit(
  api: ApiClient,
  pending: PendingReleaseView[],
  f: SignatureFile & { files: string[] },
): Promise<SignatureSubmitResult> {
  let target = pending.find((p) => p.id === f.id);
  if (!target) {
    // Not the manifest of any pending release. If one waits for the same variant, send it there:
    // the server's MANIFEST_MISMATCH is the precise answer (e.g. a file signed before a re-build).
    const m = ManifestSchema.parse(f.signed).model;
    target = pending.find((p) => p.name === m.name && p.version === m.version && p.variant === m.variant);
    if (!target) {
      throw new ApiError(
        404,
        "NOT_FOUND",
        `${f.files.join(", ")}: no release waits for this manifest (${m.name}@${m.version} ${m.variant}, ${short(f.id)}); it was published already or never pending (fleetctl release pending)`,
      );
    }
  }
  const body = { signed: f.signed, signatures: f.signatures };
  const parsed = SignatureSubmitResultSchema.safeParse(await api.submitPendingSignatures(target.id, body));
  if (!parsed.success) throw new ApiError(0, "BAD_RESPONSE", `signature upload: ${issuesOf(parsed.error)}`);
  return parsed.data;
}

export function registerReleaseCommands(program: Command, deps: ReleaseCommandDeps): void {
  // `release sign` (files only) is registered by keys-commands.ts; these join the same group.
  const release =
    program.commands.find((c) => c.name() === "release") ??
    program.command("release").description("offline release signing");

  release
    .command("pending")
    .description("list releases waiting for release signatures: what to sign, signatures present/required")
    .option("--save <dir>", "write each pending manifest to DIR, ready for fleetctl release sign")
    .action(async (o: { save?: string }, cmd: Command) => {
      const list = await listPending(deps.client(cmd));
      const saved: string[] = [];
      if (o.save !== undefined) {
        await mkdir(o.save, { recursive: true });
        for (const p of list) {
          const path = join(o.save, pendingFileName(p));
          await writeFile(path, `${JSON.stringify(p, null, 2)}\n`);
          saved.push(path);
        }
      }
      if (deps.isJson(cmd)) {
        console.log(JSON.stringify({ pending: list, ...(o.save !== undefined ? { saved } : {}) }, null, 2));
        return;
      }
      for (const line of formatPending(list)) console.log(line);
      for (const path of saved) console.log(`saved ${path}`);
    });

  release
    .command("upload <files...>")
    .description(
      "upload signature files written by fleetctl release sign; the server keeps valid signatures until the threshold is reached, then publishes",
    )
    .action(async (paths: string[], _o: unknown, cmd: Command) => {
      // Every file is checked before anything is sent: a bad file uploads nothing.
      const files: SignatureFile[] = [];
      for (const path of paths) {
        const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
          throw new ApiError(0, "NOT_FOUND", `${path}: cannot read (${err.code ?? err.message})`);
        });
        files.push(parseSignatureFile(path, text));
      }
      const api = deps.client(cmd);
      const pending = await listPending(api);
      const results: SignatureSubmitResult[] = [];
      try {
        for (const f of mergeSignatureFiles(files)) {
          const r = await submit(api, pending, f);
          results.push(r);
          if (!deps.isJson(cmd)) for (const line of formatSubmit(r, f.files)) console.log(line);
        }
      } finally {
        // Releases handled before a failing one stay handled: say so in JSON too.
        if (deps.isJson(cmd) && results.length > 0) console.log(JSON.stringify(results, null, 2));
      }
    });
}

import type { z } from "zod";
import { LineageSchema, type SignedManifest, SignedManifestSchema } from "../../shared/schemas/manifest.js";
import type { Db } from "./db.js";
import { insertPendingRow, type PendingReleaseRow } from "./pending-release-repo.js";
import { decodeJson, decodeSignedJson } from "./row-codec.js";

export interface BundleRow {
  sha256: string;
  size: number;
  name: string;
  version: string;
  variant: string;
  releaseCounter: number;
  manifest: SignedManifest;
  createdAt: string;
}

export interface ModelVersionRow {
  name: string;
  version: string;
  lineage: z.infer<typeof LineageSchema>;
  samplesCount: number;
  modelSha256: string;
  createdAt: string;
}

interface RawBundle {
  sha256: string;
  size: number;
  name: string;
  version: string;
  variant: string;
  release_counter: number;
  manifest: string;
  created_at: string;
}
interface RawVersion {
  name: string;
  version: string;
  lineage: string;
  samples_count: number;
  model_sha256: string;
  created_at: string;
}

/** `table`: bundles built on upload or re_releases (rollbacks); both hold the same columns. */
const bundleRow = (table: "bundles" | "re_releases", r: RawBundle): BundleRow => ({
  sha256: r.sha256,
  size: r.size,
  name: r.name,
  version: r.version,
  variant: r.variant,
  releaseCounter: r.release_counter,
  manifest: decodeSignedJson(SignedManifestSchema, r.manifest, {
    table,
    key: `sha256=${r.sha256}`,
    column: "manifest",
  }),
  createdAt: r.created_at,
});
const versionRow = (r: RawVersion): ModelVersionRow => ({
  name: r.name,
  version: r.version,
  lineage: decodeJson(LineageSchema, r.lineage, {
    table: "model_versions",
    key: `name=${r.name}, version=${r.version}`,
    column: "lineage",
  }),
  samplesCount: r.samples_count,
  modelSha256: r.model_sha256,
  createdAt: r.created_at,
});

/** Decoded bundle rows kept by `bundle()`. */
const DECODED_BUNDLES_MAX = 256;

export function createModelRepo(db: Db) {
  const decodedBundles = new Map<string, BundleRow>();
  return {
    /** Release counters are per model name and never reused: next = max existing + 1. */
    nextReleaseCounter(name: string): number {
      // Re-releases (rollbacks, see registry/re-release.ts) consume counters of the same sequence.
      const r = db
        .prepare(
          `SELECT MAX(m) AS m FROM (
             SELECT MAX(release_counter) AS m FROM bundles WHERE name = ?
             UNION ALL SELECT MAX(release_counter) AS m FROM re_releases WHERE name = ?
             UNION ALL SELECT MAX(release_counter) AS m FROM pending_releases WHERE name = ?) AS counters`,
        )
        .get(name, name, name) as { m: number | null };
      return (r.m ?? 0) + 1;
    },
    /** A re-release: existing bytes under a new release counter (architecture.md §3 fleet rollback). */
    insertReRelease(b: BundleRow, originSha256: string): void {
      db.prepare(
        "INSERT INTO re_releases (sha256, size, name, version, variant, release_counter, manifest, origin_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(
        b.sha256,
        b.size,
        b.name,
        b.version,
        b.variant,
        b.releaseCounter,
        JSON.stringify(b.manifest),
        originSha256,
        b.createdAt,
      );
    },
    /** A bundle by hash, whether built on upload or re-released. */
    anyBundle(sha256: string): BundleRow | null {
      const b = db.prepare("SELECT * FROM bundles WHERE sha256 = ?").get(sha256) as RawBundle | undefined;
      if (b) return bundleRow("bundles", b);
      const r = db.prepare("SELECT * FROM re_releases WHERE sha256 = ?").get(sha256) as RawBundle | undefined;
      return r ? bundleRow("re_releases", r) : null;
    },
    /**
     * The newest re-release of `originSha256` if its counter is above every bundle built on upload
     * for the model (so a device on any of them accepts it), else null.
     */
    currentReReleaseOf(originSha256: string, name: string): BundleRow | null {
      const r = db
        .prepare(
          `SELECT * FROM re_releases WHERE origin_sha256 = ? AND release_counter >
             (SELECT COALESCE(MAX(release_counter), 0) FROM bundles WHERE name = ?)
           ORDER BY release_counter DESC LIMIT 1`,
        )
        .get(originSha256, name) as RawBundle | undefined;
      return r ? bundleRow("re_releases", r) : null;
    },
    hasVersion(name: string, version: string): boolean {
      return db.prepare("SELECT 1 FROM model_versions WHERE name = ? AND version = ?").get(name, version) !== undefined;
    },
    /**
     * Inserts a version with its bundles (or, with offline release signing, its pending releases)
     * atomically; false when name+version exists.
     */
    insertVersion(v: ModelVersionRow, bundles: BundleRow[], pending: PendingReleaseRow[] = []): boolean {
      return db.transaction(() => {
        const res = db
          .prepare(
            "INSERT OR IGNORE INTO model_versions (name, version, lineage, samples_count, model_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)",
          )
          .run(v.name, v.version, JSON.stringify(v.lineage), v.samplesCount, v.modelSha256, v.createdAt);
        if (res.changes !== 1) return false;
        const ins = db.prepare(
          "INSERT INTO bundles (sha256, size, name, version, variant, release_counter, manifest, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        );
        for (const b of bundles) {
          ins.run(
            b.sha256,
            b.size,
            b.name,
            b.version,
            b.variant,
            b.releaseCounter,
            JSON.stringify(b.manifest),
            b.createdAt,
          );
        }
        for (const p of pending) insertPendingRow(db, p);
        return true;
      })();
    },
    listNames(): { name: string; versions: number; latestVersion: string; latestReleaseCounter: number }[] {
      return db
        .prepare(
          `SELECT b.name AS name, COUNT(DISTINCT b.version) AS versions, MAX(b.release_counter) AS latest,
             (SELECT version FROM bundles WHERE name = b.name ORDER BY release_counter DESC LIMIT 1) AS latestVersion
           FROM bundles b GROUP BY b.name ORDER BY b.name`,
        )
        .all()
        .map((r) => {
          const x = r as { name: string; versions: number; latest: number; latestVersion: string };
          return { name: x.name, versions: x.versions, latestVersion: x.latestVersion, latestReleaseCounter: x.latest };
        });
    },
    versionsOf(name: string): ModelVersionRow[] {
      return (
        db.prepare("SELECT * FROM model_versions WHERE name = ? ORDER BY created_at, version").all(name) as RawVersion[]
      ).map(versionRow);
    },
    getVersion(name: string, version: string): ModelVersionRow | null {
      const r = db.prepare("SELECT * FROM model_versions WHERE name = ? AND version = ?").get(name, version) as
        | RawVersion
        | undefined;
      return r ? versionRow(r) : null;
    },
    bundlesOf(name: string, version: string): BundleRow[] {
      return (
        db
          .prepare("SELECT * FROM bundles WHERE name = ? AND version = ? ORDER BY release_counter")
          .all(name, version) as RawBundle[]
      ).map((r) => bundleRow("bundles", r));
    },
    /**
     * Bundle rows are written once and never changed (content-addressed), so decoded ones are kept:
     * a rollout assigning 10,000 devices read and schema-checked the same signed manifest for each
     * (issue 14). Bounded; the oldest entry goes first.
     */
    bundle(sha256: string): BundleRow | null {
      const hit = decodedBundles.get(sha256);
      if (hit) return hit;
      const r = db.prepare("SELECT * FROM bundles WHERE sha256 = ?").get(sha256) as RawBundle | undefined;
      if (!r) return null;
      const row = bundleRow("bundles", r);
      if (decodedBundles.size >= DECODED_BUNDLES_MAX) decodedBundles.delete(decodedBundles.keys().next().value!);
      decodedBundles.set(sha256, row);
      return row;
    },
  };
}
export type ModelRepo = ReturnType<typeof createModelRepo>;

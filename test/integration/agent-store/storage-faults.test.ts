import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { extractBundle } from "../../../agent/bundle/safe-extract.js";
import { openAgentStore } from "../../../agent/store/agent-store.js";
import { openFallbackDb } from "../../../agent/store/fallback-db.js";
import { openTelemetryBuffer } from "../../../agent/telemetry/telemetry-buffer.js";
import type { ChunkChannel } from "../../../agent/transport/chunk-channel.js";
import { startDownload } from "../../../agent/updater/downloader.js";
import { marksBundleBad } from "../../../agent/updater/verdicts.js";
import { encodeChunkFrame } from "../../../shared/chunk-frame.js";
import { systemClock } from "../../../shared/clock.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { sha256Hex } from "../../../shared/hash.js";
import { createLogger } from "../../../shared/logger.js";
import type { ChunkRequest } from "../../../shared/schemas/chunks.js";
import { canMountTmpfs, mountTmpfs, TMPFS_SKIP_REASON, type Tmpfs } from "../../helpers/tmpfs.js";
import {
  buildTar,
  MODEL_BYTES,
  makeKeys,
  makeManifest,
  SAMPLES_BYTES,
  signedManifest,
} from "../../unit/agent-updater/helpers.js";

/**
 * Issue 20 §2 with real storage faults: the downloader, the extraction and both SQLite stores on a
 * small tmpfs that is filled, freed and remounted read-only. Each used to crash the agent (an
 * unhandled rejection), report the wrong code (BUNDLE_UNSAFE_ENTRY, condemning a good bundle) or
 * throw at open. One case injects SQLITE_FULL through the store interface and runs without root.
 */
const log = createLogger({ name: "test", level: "silent", pretty: false });
const CHUNK = 64 * 1024;

/** An in-process stand-in for the chunk transport: answers from `bundle`, or holds requests past `stopAfter`. */
function fakeChannel(bundle: Buffer) {
  let onFrame: ((b: Buffer) => void) | null = null;
  const st = { served: 0, stopAfter: Number.POSITIVE_INFINITY, held: [] as ChunkRequest[] };
  const serve = (req: ChunkRequest) => {
    const bytes = bundle.subarray(req.offset, req.offset + req.length);
    const header = {
      reqId: req.reqId,
      bundle: req.bundle,
      offset: req.offset,
      length: bytes.length,
      size: bundle.length,
    };
    setImmediate(() => onFrame?.(encodeChunkFrame(header, bytes)));
  };
  const channel: ChunkChannel = {
    connected: () => true,
    request(req) {
      if (st.served >= st.stopAfter) return void st.held.push(req);
      st.served += 1;
      serve(req);
    },
    onFrame(cb) {
      onFrame = cb;
      return () => {
        onFrame = null;
      };
    },
    onConnectionChange: () => () => undefined,
  };
  return {
    st,
    channel,
    release() {
      st.stopAfter = Number.POSITIVE_INFINITY;
      for (const r of st.held.splice(0)) serve(r);
    },
  };
}

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "resolved",
    (e: unknown) => (e instanceof EdgeFleetError ? e.code : `raw ${String(e)}`),
  );

const waitUntil = async (what: string, pred: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("fallback database: a real SQLITE_FULL without root (max_page_count caps the file)", () => {
  it("a write that does not fit moves to an in-memory copy with everything before it; restore() puts it back on the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ef-fb-"));
    try {
      const path = join(dir, "x.db");
      const cap = 12; // pages: room for the schema and a few rows, not for the big one
      const modes: string[] = [];
      const h = openFallbackDb({
        path,
        log,
        init(db, onDisk) {
          if (onDisk) {
            db.pragma("journal_mode = WAL");
            db.pragma(`max_page_count = ${cap}`);
          }
          db.exec("CREATE TABLE IF NOT EXISTS t (v TEXT NOT NULL)");
        },
        onModeChange: (m, f) => modes.push(`${m}:${f?.code ?? "-"}`),
      });
      const insert = (v: string) => h.run(() => h.prepare("INSERT INTO t (v) VALUES (?)").run(v));
      const count = () => (h.run(() => h.prepare("SELECT COUNT(*) AS n FROM t").get()) as { n: number }).n;
      insert("small");
      insert("x".repeat(200_000)); // SQLITE_FULL on the file: used to throw to the caller
      expect(h.mode()).toBe("memory");
      expect(h.fault()?.code).toBe("DISK_FULL");
      expect(count()).toBe(2);
      expect(h.restore()).toBe(true); // the image is written as a file, max_page_count does not bind it
      expect(modes).toEqual(["memory:DISK_FULL", "disk:-"]);
      insert("after");
      h.close(); // on the file (or written back at close)
      const check = new Database(path, { readonly: true });
      expect(check.prepare("SELECT COUNT(*) AS n FROM t").get()).toEqual({ n: 3 });
      check.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("downloader: a store that cannot write its progress (fault injection, no root needed)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ef-sf-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("SQLITE_FULL from setDownloadProgress ends the download with DISK_FULL, never an unhandled rejection", async () => {
    const bundle = randomBytes(CHUNK * 6);
    const sha = sha256Hex(bundle);
    const { channel } = fakeChannel(bundle);
    const store = {
      downloadProgress: () => null,
      setDownloadProgress: () => {
        throw new Database.SqliteError("database or disk is full", "SQLITE_FULL");
      },
      clearDownload: () => undefined,
    };
    const dl = startDownload({
      sha256: sha,
      size: bundle.length,
      dir,
      store,
      channel,
      clock: systemClock,
      log,
      chunkSize: CHUNK,
    });
    expect(await codeOf(dl.done)).toBe("DISK_FULL");
    await dl.close();
  }, 20_000); // on the old code `done` never settled (the rejection escaped instead)
});

describe.skipIf(!canMountTmpfs)(
  `real storage faults on a tmpfs (${canMountTmpfs ? "root" : TMPFS_SKIP_REASON})`,
  () => {
    let root: string;
    let fs: Tmpfs;
    beforeAll(async () => {
      root = await mkdtemp(join(tmpdir(), "ef-sf-"));
    });
    afterEach(async () => {
      await fs?.unmount();
    });
    afterAll(async () => {
      await fs?.unmount();
      await rm(root, { recursive: true, force: true });
    });
    const mount = async (name: string, mb: number) => {
      fs = await mountTmpfs(join(root, name), mb * 1024 * 1024);
      return fs;
    };

    it("disk full mid-download: DISK_FULL; space returns → the same bundle resumes and completes", async () => {
      const t = await mount("dl-full", 8);
      const bundle = randomBytes(CHUNK * 24 + 777);
      const sha = sha256Hex(bundle);
      const store = openAgentStore(join(t.path, "agent.db"));
      const fake = fakeChannel(bundle);
      fake.st.stopAfter = 8;
      const opts = { sha256: sha, size: bundle.length, dir: join(t.path, "downloads"), store, clock: systemClock, log };
      const first = startDownload({ ...opts, channel: fake.channel, chunkSize: CHUNK, timeoutMs: 60_000 });
      await waitUntil("8 chunks persisted", () => (store.downloadProgress(sha) ?? 0) >= 8 * CHUNK);
      await t.fill(0);
      fake.release();
      expect(await codeOf(first.done)).toBe("DISK_FULL");
      await first.close();

      await t.free();
      const again = startDownload({ ...opts, channel: fakeChannel(bundle).channel, chunkSize: CHUNK });
      const path = await again.done;
      expect(sha256Hex(await readFile(path))).toBe(sha);
      expect(store.restore()).toBe(true);
      expect(store.health()).toEqual({ mode: "disk", fault: null });
      store.close();
    });

    it("read-only mid-download (the issue's EROFS at the final rename): STORAGE_READ_ONLY; writable again → completes", async () => {
      const t = await mount("dl-ro", 8);
      const bundle = randomBytes(CHUNK * 12 + 5);
      const sha = sha256Hex(bundle);
      const store = openAgentStore(join(t.path, "agent.db"));
      const fake = fakeChannel(bundle);
      fake.st.stopAfter = 6;
      const opts = { sha256: sha, size: bundle.length, dir: join(t.path, "downloads"), store, clock: systemClock, log };
      const first = startDownload({ ...opts, channel: fake.channel, chunkSize: CHUNK, timeoutMs: 60_000 });
      await waitUntil("6 chunks persisted", () => (store.downloadProgress(sha) ?? 0) >= 6 * CHUNK);
      await t.readOnly();
      fake.release();
      expect(await codeOf(first.done)).toBe("STORAGE_READ_ONLY");
      await first.close();

      await t.readWrite();
      const again = startDownload({ ...opts, channel: fakeChannel(bundle).channel, chunkSize: CHUNK });
      expect(sha256Hex(await readFile(await again.done))).toBe(sha);
      store.close();
    }, 30_000); // on the old code the EROFS escaped and `done` never settled

    it("disk full while extracting: DISK_FULL (was BUNDLE_UNSAFE_ENTRY), the bundle is not condemned; with space it extracts", async () => {
      const t = await mount("extract", 3);
      const keys = makeKeys();
      const card = randomBytes(2 * 1024 * 1024);
      const files = [
        { path: "model.onnx", data: MODEL_BYTES },
        { path: "samples.json", data: SAMPLES_BYTES },
        { path: "MODEL_CARD.md", data: card },
      ];
      const manifest = makeManifest({}, files);
      const envelope = signedManifest(keys, manifest);
      const archive = buildTar([
        { name: "manifest.json", data: Buffer.from(JSON.stringify(envelope)) },
        ...files.map((f) => ({ name: f.path, data: f.data })),
      ]);
      const bundlePath = join(root, "bundle.tar"); // the bundle itself sits elsewhere; only extraction is short of room
      await writeFile(bundlePath, archive);
      const extract = () =>
        extractBundle({
          bundlePath,
          rawManifest: envelope,
          manifest,
          stagingParent: join(t.path, "staging"),
          destDir: join(t.path, "models", "vad", "abc"),
        });
      await t.fill(1024 * 1024);
      const err = await extract().then(
        () => null,
        (e: unknown) => e as EdgeFleetError,
      );
      expect(err?.code).toBe("DISK_FULL");
      expect(marksBundleBad(err!.code)).toBe(false);
      expect(await readdir(join(t.path, "staging"))).toEqual([]);
      await t.free();
      expect(await extract()).toBe(join(t.path, "models", "vad", "abc"));
      expect((await stat(join(t.path, "models", "vad", "abc", "MODEL_CARD.md"))).size).toBe(card.length);
    });

    it("agent store: full → writes go on in memory; space returns → written back to the file", async () => {
      const t = await mount("store", 4);
      const path = join(t.path, "agent.db");
      let store = openAgentStore(path);
      const rec = (state: "downloading" | "failed") => ({
        model: "m",
        state,
        committed: null,
        candidate: null,
        error: null,
        rolloutId: "r1",
        probationRestarts: 0,
      });
      store.saveModel(rec("downloading"));
      await t.fill(0);
      const seq = store.saveModel(rec("failed")); // SQLITE_FULL used to escape here
      expect(seq).toBeGreaterThan(1);
      expect(store.model("m")?.state).toBe("failed");
      expect(store.health().fault?.code).toBe("DISK_FULL");
      expect(store.restore()).toBe(false); // still full
      await t.free();
      expect(store.restore()).toBe(true);
      store.close();
      store = openAgentStore(path);
      expect(store.model("m")?.state).toBe("failed");
      expect(store.nextEventSeq()).toBe(seq + 1);
      store.close();
    });

    it("agent store and telemetry ring: read-only and full at open → in memory with what the file held, no throw", async () => {
      const t = await mount("open", 4);
      const dbPath = join(t.path, "agent.db");
      const ringPath = join(t.path, "telemetry.db");
      const caps = { maxRows: 1000, maxBytes: 1024 * 1024 };
      let store = openAgentStore(dbPath);
      store.acceptDesired(7, { hello: "world" });
      store.close();
      let ring = openTelemetryBuffer({ path: ringPath, durability: "full", caps, log });
      ring.append({
        kind: "job",
        ts: 1,
        job: "j",
        runId: "r",
        phase: "started",
        model: "m",
        version: null,
        total: 1,
        done: 0,
        failed: 0,
      });
      ring.commit();
      ring.close();

      await t.readOnly();
      store = openAgentStore(dbPath);
      expect(store.health().fault?.code).toBe("STORAGE_READ_ONLY");
      expect(store.lastDesired()?.seq).toBe(7);
      store.acceptDesired(8, {}); // in memory
      expect(store.lastDesired()?.seq).toBe(8);
      store.close();
      const modes: string[] = [];
      ring = openTelemetryBuffer({
        path: ringPath,
        durability: "full",
        caps,
        log,
        onModeChange: (m, f) => modes.push(`${m}:${f?.code}`),
      });
      expect(modes).toEqual(["memory:STORAGE_READ_ONLY"]);
      expect(ring.readAfter(0, 10)).toHaveLength(1);
      ring.close();
      await t.readWrite();

      await rm(ringPath); // a fresh ring on a full disk: the pragma at open used to throw SQLITE_FULL
      await t.fill(0);
      const volatile: number[] = [];
      ring = openTelemetryBuffer({
        path: ringPath,
        durability: "full",
        caps,
        log,
        onVolatile: (n) => volatile.push(n),
      });
      expect(ring.stats().storage).toBe("memory");
      ring.append({
        kind: "job",
        ts: 2,
        job: "j",
        runId: "r",
        phase: "completed",
        model: "m",
        version: null,
        total: 1,
        done: 1,
        failed: 0,
      });
      await ring.durable();
      expect(ring.readAfter(0, 10).map((r) => r.seq)).toEqual([1]);
      expect(volatile).toEqual([1]);
      await t.free();
      expect(ring.restore()).toBe(true);
      ring.close();
      ring = openTelemetryBuffer({ path: ringPath, durability: "full", caps, log });
      expect(ring.stats().storage).toBe("disk");
      expect(ring.readAfter(0, 10).map((r) => r.seq)).toEqual([1]);
      ring.close();
    });
  },
);

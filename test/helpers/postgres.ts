import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "./ports.js";

/**
 * A real PostgreSQL for store tests (issue 14). `EDGEFLEET_TEST_DATABASE_URL` (an admin URL) names
 * a server to use; otherwise one private cluster is started per test process (initdb into a temp
 * dir owned by `postgres`, run as `postgres` since tests run as root, a free port, its socket in
 * the temp dir, fsync off) and stopped when the process exits, or by a watchdog if it is killed.
 * Each `createTestDatabase()` is a fresh database, dropped by its `drop()`.
 *
 * Without PostgreSQL's binaries, `postgresSkipReason` says why the suites skip; with
 * `EDGEFLEET_REQUIRE_POSTGRES=1` (CI) that is an error instead.
 */

function findBinDir(): string | null {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return null;
  const majors = readdirSync(root)
    .filter((d) => existsSync(join(root, d, "bin", "postgres")))
    .sort((a, b) => Number(b) - Number(a));
  return majors.length > 0 ? join(root, majors[0]!, "bin") : null;
}

const externalUrl = process.env.EDGEFLEET_TEST_DATABASE_URL;
const binDir = externalUrl ? null : findBinDir();

export const postgresSkipReason: string | null =
  externalUrl || binDir
    ? null
    : "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres) and EDGEFLEET_TEST_DATABASE_URL is unset";
if (postgresSkipReason !== null) {
  if (process.env.EDGEFLEET_REQUIRE_POSTGRES === "1")
    throw new Error(`EDGEFLEET_REQUIRE_POSTGRES=1 but ${postgresSkipReason}`);
  console.warn(`skipping PostgreSQL store tests: ${postgresSkipReason}`);
}

let cluster: Promise<string> | null = null;

function asPostgres(args: string[]): string[] {
  return process.getuid?.() === 0 ? ["-u", "postgres", "--", ...args] : args;
}
function run(bin: string, args: string[]): void {
  const argv = asPostgres([join(binDir!, bin), ...args]);
  const [cmd, ...rest] = process.getuid?.() === 0 ? ["runuser", ...argv] : argv;
  execFileSync(cmd!, rest, { stdio: ["ignore", "ignore", "pipe"] });
}

async function startCluster(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "ef-pg-"));
  const data = join(dir, "data");
  if (process.getuid?.() === 0) chownSync(dir, Number(execFileSync("id", ["-u", "postgres"]).toString().trim()), -1);
  run("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  run("pg_ctl", ["-D", data, "-o", opts, "-l", join(dir, "log"), "-w", "start"]);
  const stop = [
    process.getuid?.() === 0 ? "runuser" : "",
    ...asPostgres([join(binDir!, "pg_ctl"), "-D", data, "stop", "-m", "immediate"]),
  ]
    .filter(Boolean)
    .map((a) => `'${a}'`)
    .join(" ");
  // A watchdog outlives a killed test process: it stops the cluster once this process is gone.
  spawn(
    "sh",
    ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ${stop} >/dev/null 2>&1; rm -rf '${dir}'`],
    {
      detached: true,
      stdio: "ignore",
    },
  ).unref();
  process.once("exit", () => {
    try {
      run("pg_ctl", ["-D", data, "stop", "-m", "immediate"]);
    } catch {
      // Already stopped: the watchdog removes the directory either way.
    }
  });
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

/** The admin URL of the server tests use (started on first use). */
export function postgresAdminUrl(): Promise<string> {
  if (postgresSkipReason !== null) throw new Error(postgresSkipReason);
  if (externalUrl) return Promise.resolve(externalUrl);
  cluster ??= startCluster();
  return cluster;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: await postgresAdminUrl() });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

const templates = new Map<string, Promise<string>>();

async function urlOf(name: string): Promise<string> {
  const u = new URL(await postgresAdminUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * A fresh database on the test server: empty, or a copy of a template made once per process by
 * `template.prepare` (e.g. the store's migrations: copying is about half the time of migrating).
 * FILE_COPY: with fsync off it is faster than PostgreSQL 15's default of logging every page.
 */
export async function createTestDatabase(template?: {
  key: string;
  prepare(url: string): void | Promise<void>;
}): Promise<TestDatabase> {
  let from = "template0";
  if (template) {
    let made = templates.get(template.key);
    if (!made) {
      made = (async () => {
        const t = `ef_tpl_${template.key}_${process.pid}_${randomBytes(3).toString("hex")}`;
        await admin((c) => c.query(`CREATE DATABASE ${t} TEMPLATE template0 ENCODING 'UTF8' STRATEGY FILE_COPY`));
        await template.prepare(await urlOf(t));
        if (externalUrl) process.once("beforeExit", () => void admin((c) => c.query(`DROP DATABASE IF EXISTS ${t}`)));
        return t;
      })();
      templates.set(template.key, made);
    }
    from = await made;
  }
  const name = `ef_${randomBytes(6).toString("hex")}`;
  await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${from} ENCODING 'UTF8' STRATEGY FILE_COPY`));
  return {
    url: await urlOf(name),
    name,
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  };
}

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

/** A fresh, empty database on the test server. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `ef_${randomBytes(6).toString("hex")}`;
  await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`));
  const u = new URL(await postgresAdminUrl());
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    name,
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  };
}

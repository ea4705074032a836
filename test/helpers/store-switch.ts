import { afterAll, beforeAll, vi } from "vitest";

/**
 * `EDGEFLEET_TEST_STORE=postgres npx vitest run <files>` (issue 14): every fleet server a test
 * starts in-process (`startFleetServer`, the e2e harness) gets its store on PostgreSQL instead of
 * `{dataDir}/fleet.db` — one fresh database per data directory, so a server restarted on the same
 * directory finds its data again. Servers started as child processes and tests that open SQLite
 * files themselves are not switched. Without the variable this file does nothing.
 */
if (process.env.EDGEFLEET_TEST_STORE === "postgres") {
  let adminUrl: string | undefined;
  const byDataDir = new Map<string, string>();
  // Visible proof the switch took: how many stores this file's servers opened on PostgreSQL.
  afterAll(() => {
    console.info(`EDGEFLEET_TEST_STORE=postgres: ${byDataDir.size} fleet server store(s) on PostgreSQL`);
  });
  beforeAll(async () => {
    const { postgresAdminUrl } = await import("./postgres.js");
    adminUrl = await postgresAdminUrl();
  });
  vi.doMock(import("../../fleet-server/store/db.js"), async (importOriginal) => {
    const original = await importOriginal();
    const { openPostgresBridge } = await import("../../fleet-server/store/pg-bridge.js");
    let admin: ReturnType<typeof openPostgresBridge> | undefined;
    const databaseFor = (dataDir: string): string => {
      let url = byDataDir.get(dataDir);
      if (url) return url;
      if (!adminUrl) throw new Error("EDGEFLEET_TEST_STORE=postgres: the PostgreSQL server is not up yet");
      admin ??= openPostgresBridge(adminUrl);
      const name = `ef_sw_${process.pid}_${byDataDir.size}_${Date.now().toString(36)}`;
      admin.exec(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' STRATEGY FILE_COPY`);
      const u = new URL(adminUrl);
      u.pathname = `/${name}`;
      url = u.toString();
      byDataDir.set(dataDir, url);
      return url;
    };
    return {
      ...original,
      openStore: (opts: Parameters<typeof original.openStore>[0]) =>
        original.openStore(opts.databaseUrl ? opts : { ...opts, databaseUrl: databaseFor(opts.dataDir) }),
    };
  });
}

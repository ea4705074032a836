import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EdgeFleetError } from "../../shared/errors.js";

/**
 * The dashboard's page, script and style sheet. The script is the client (fleet-server/ui/client,
 * vanilla TypeScript) bundled by esbuild on first request and kept in memory, so neither a test
 * nor `npm run demo` has to remember a build step (and never serves a stale one). A production
 * install without devDependencies has no esbuild: it serves dist/ui/app.js, which
 * `npm run build:dashboard` writes.
 */
const HERE = fileURLToPath(new URL(".", import.meta.url));
const ROOT = join(HERE, "..", "..");
export const DASHBOARD_ENTRY = join(HERE, "client", "main.ts");
export const DASHBOARD_PREBUILT = join(ROOT, "dist", "ui", "app.js");

export interface Asset {
  body: string;
  type: string;
}

/** Builds the client bundle (esbuild API, as scripts/build/build-agent.ts calls it). */
export async function bundleDashboard(outfile?: string): Promise<string> {
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch {
    throw new EdgeFleetError(
      "INTERNAL",
      "the dashboard script is not built: run `npm run build:dashboard` (esbuild is a devDependency)",
    );
  }
  const result = await esbuild.build({
    entryPoints: [DASHBOARD_ENTRY],
    bundle: true,
    format: "iife",
    target: "es2022",
    platform: "browser",
    minify: true,
    legalComments: "none",
    write: outfile !== undefined,
    ...(outfile ? { outfile } : { outfile: "app.js" }),
    logLevel: "warning",
  });
  return outfile ? await readFile(outfile, "utf8") : result.outputFiles![0]!.text;
}

export interface DashboardAssets {
  page(): Promise<Asset>;
  asset(file: "app.js" | "app.css"): Promise<Asset>;
}

export function createDashboardAssets(): DashboardAssets {
  const cache = new Map<string, Promise<Asset>>();
  const once = (key: string, load: () => Promise<Asset>) => {
    let p = cache.get(key);
    if (!p) {
      // A failed build is not cached: the next request tries again.
      p = load().catch((err: unknown) => {
        cache.delete(key);
        throw err;
      });
      cache.set(key, p);
    }
    return p;
  };
  return {
    page: () =>
      once("page", async () => ({
        body: await readFile(join(HERE, "static", "index.html"), "utf8"),
        type: "text/html; charset=utf-8",
      })),
    asset: (file) =>
      once(file, async () => {
        if (file === "app.css") {
          return { body: await readFile(join(HERE, "static", "app.css"), "utf8"), type: "text/css; charset=utf-8" };
        }
        const type = "text/javascript; charset=utf-8";
        try {
          return { body: await bundleDashboard(), type };
        } catch (err) {
          const prebuilt = await readFile(DASHBOARD_PREBUILT, "utf8").catch(() => null);
          if (prebuilt === null) throw err;
          return { body: prebuilt, type };
        }
      }),
  };
}

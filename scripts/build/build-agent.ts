import { cp, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/**
 * `npm run build:agent` (issue 16): the agent and its model host as two bundled ES modules in
 * dist/agent/, run by plain `node` — no TypeScript transpiler in the device's processes. Under tsx
 * the agent process held esbuild's service and every transpiled module (docs/benchmarks.md, "Agent
 * idle"). Native and worker-loading packages stay outside the bundle and load from node_modules:
 * better-sqlite3 and onnxruntime-node (native), pino and pino-pretty (transports start worker files
 * by path). The project's own N-API addons are copied beside the bundle, where the bundled code's
 * relative `require` finds them (dist/native/…/build/Release).
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const ADDONS = ["peer-credentials", "sd-notify"];

/**
 * Builds into `outRoot` (default dist/): `agent/edge-agent.js`, `agent/model-host-main.js`,
 * `native/…`. It must lie inside the package, where node_modules and package.json are found.
 */
export async function buildAgent(outRoot = join(ROOT, "dist")): Promise<{ entry: string; files: string[] }> {
  const OUT = join(outRoot, "agent");
  await rm(outRoot, { recursive: true, force: true });
  await mkdir(OUT, { recursive: true });
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: { "edge-agent": "agent/cli.ts", "model-host-main": "agent/runtime/model-host-main.ts" },
    outdir: OUT,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // Bundled CommonJS dependencies call require(); give the ES module one.
    banner: {
      js: "import { createRequire as __efRequire } from 'node:module'; const require = __efRequire(import.meta.url);",
    },
    external: ["better-sqlite3", "onnxruntime-node", "pino", "pino-pretty", "*.node"],
    metafile: true,
    logLevel: "warning",
  });
  for (const addon of ADDONS) {
    const from = join(ROOT, "agent", "native", addon, "build", "Release");
    await cp(from, join(outRoot, "native", addon, "build", "Release"), { recursive: true }).catch(() => {
      // Not built on this machine: the bundle runs without it, like the sources do (see each addon's loader).
    });
  }
  return { entry: join(OUT, "edge-agent.js"), files: Object.keys(result.metafile.outputs) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { files } = await buildAgent();
  for (const f of files) console.log(f);
}

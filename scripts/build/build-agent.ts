import { cp, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { AGENT_NODE_FLAGS } from "../../agent/service/node-flags.js";
import { MQTT_TRANSPORT_STUBS, mqttTransportStubs } from "./lazy-transports.js";

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
export async function buildAgent(
  outRoot = join(ROOT, "dist"),
): Promise<{ entry: string; nodeFlags: string[]; files: string[] }> {
  const OUT = join(outRoot, "agent");
  // Only what this build writes: dist/ui (npm run build:dashboard) and dist/packages stay.
  for (const dir of ["agent", "native"]) await rm(join(outRoot, dir), { recursive: true, force: true });
  await mkdir(OUT, { recursive: true });
  const lazyTransports = mqttTransportStubs();
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
    // The device keeps the whole bundle's source text in V8's heap for the life of the process:
    // unminified it was 4 MB of text held as an 8 MB two-byte string (a few non-ASCII comments force
    // UTF-16). Minified, comment-free ASCII is a quarter of that (issue 16, docs/benchmarks.md
    // "Agent idle"). keepNames keeps function and class names in stack traces and logged errors;
    // licence comments go to a .LEGAL.txt file beside each bundle.
    minify: true,
    keepNames: true,
    charset: "ascii",
    legalComments: "external",
    metafile: true,
    logLevel: "warning",
    plugins: [lazyTransports.plugin],
  });
  const missed = MQTT_TRANSPORT_STUBS.filter((s) => !lazyTransports.applied.has(s));
  if (missed.length > 0) throw new Error(`mqtt's layout changed: no lazy stub applied for ${missed.join(", ")}`);
  // Read by the package's launcher and by install-agent.sh's unit (agent/service/node-flags.ts).
  await writeFile(join(OUT, "node-flags"), `${AGENT_NODE_FLAGS.join(" ")}\n`);
  for (const addon of ADDONS) {
    const file = `${addon.replace(/-/g, "_")}.node`;
    const release = join("native", addon, "build", "Release");
    await mkdir(join(outRoot, release), { recursive: true });
    await cp(join(ROOT, "agent", release, file), join(outRoot, release, file)).catch(() => {
      // Not built on this machine: the bundle runs without it, like the sources do (see each addon's loader).
    });
  }
  return {
    entry: join(OUT, "edge-agent.js"),
    nodeFlags: [...AGENT_NODE_FLAGS],
    files: Object.keys(result.metafile.outputs),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { files } = await buildAgent();
  for (const f of files) console.log(f);
}

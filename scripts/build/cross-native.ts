import { execFile } from "node:child_process";
import { cp, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export type PackageArch = "x64" | "arm64";

/** GNU cross toolchain prefix per target (Debian: `apt-get install g++-aarch64-linux-gnu`). */
const TOOLCHAIN: Partial<Record<PackageArch, { prefix: string; apt: string }>> = {
  arm64: { prefix: "aarch64-linux-gnu", apt: "g++-aarch64-linux-gnu" },
};
const OWN_ADDONS = [
  { dir: "peer-credentials", file: "peer_credentials.node" },
  { dir: "sd-notify", file: "sd_notify.node" },
];

export interface CrossNative {
  /** Package-relative destination → built file, for this project's addons. */
  addons: Record<string, string>;
  betterSqlite3: string;
}

/** npm's own node-gyp: the one `npm ci` builds with, present wherever npm is. */
function nodeGyp(): string {
  return join(dirname(process.execPath), "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js");
}

async function gypRebuild(dir: string, arch: PackageArch, prefix: string): Promise<void> {
  // Node's headers are the same for every architecture; the node ABI of the device's Node 20 matches.
  const nodedir = process.env.npm_config_nodedir ?? join(dirname(process.execPath), "..");
  await run(process.execPath, [nodeGyp(), "rebuild", `--arch=${arch}`, `--nodedir=${nodedir}`, "--directory", dir], {
    env: {
      ...process.env,
      CC: `${prefix}-gcc`,
      CXX: `${prefix}-g++`,
      AR: `${prefix}-ar`,
      LINK: `${prefix}-g++`,
      // better-sqlite3's install would otherwise try to download a prebuilt binary first.
      npm_config_build_from_source: "true",
    },
    maxBuffer: 64 * 1024 * 1024,
  });
}

/**
 * Cross-compiles the package's native code for `arch` on this machine (issue 16): better-sqlite3
 * from its bundled SQLite sources and this project's two addons. onnxruntime-node needs nothing:
 * its npm package ships linux-arm64 binaries. A device with a compiler could build them itself,
 * but most cannot, and a package that fails on the device is worse than one refused here.
 */
export async function crossBuildNative(arch: PackageArch, work: string): Promise<CrossNative> {
  const tc = TOOLCHAIN[arch];
  if (!tc) throw new Error(`no cross toolchain known for ${arch}`);
  try {
    await run(`${tc.prefix}-g++`, ["--version"]);
  } catch {
    throw new Error(
      `building linux-${arch} native modules needs a cross compiler: apt-get install -y ${tc.apt} ` +
        `(or run npm ci && npm run package:agent -- --arch ${arch} on a linux-${arch} machine)`,
    );
  }
  const src = join(work, `native-${arch}`);
  await mkdir(src, { recursive: true });
  const sqlite = join(src, "better-sqlite3");
  await cp(join(ROOT, "node_modules/better-sqlite3"), sqlite, {
    recursive: true,
    filter: (p) => !p.includes(`${sqlite}/build`) && !p.endsWith("/build"),
  });
  await gypRebuild(sqlite, arch, tc.prefix);
  const addons: Record<string, string> = {};
  for (const a of OWN_ADDONS) {
    const dir = join(src, a.dir);
    await cp(join(ROOT, "agent/native", a.dir), dir, { recursive: true, filter: (p) => !p.endsWith("/build") });
    await gypRebuild(dir, arch, tc.prefix);
    addons[join("dist/native", a.dir, "build/Release", a.file)] = join(dir, "build/Release", a.file);
  }
  return { addons, betterSqlite3: join(sqlite, "build/Release/better_sqlite3.node") };
}

import { chmod, cp, mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { arch as hostArch, tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { c as tarCreate } from "tar";
import { buildAgent } from "./build-agent.js";
import { crossBuildNative, type PackageArch } from "./cross-native.js";

/**
 * `npm run package:agent -- --arch x64|arm64` (issue 16): one self-contained tarball per device
 * architecture, `edgefleet-agent-<version>-linux-<arch>.tar.gz`, holding
 *   - the agent and model host as esbuild bundles (dist/agent) and this project's addons (dist/native);
 *   - node_modules with only what the bundles leave external (better-sqlite3, onnxruntime-node, pino,
 *     pino-pretty) and their runtime dependencies, with onnxruntime's native library for this one
 *     architecture (the npm package carries every platform's: 288 MB);
 *   - bin/edge-agent (launcher with the agent's V8 flags), scripts/install-agent.sh, device-profiles/.
 * Every native binary in it is checked to be an ELF object for the target machine, so a package
 * that would not load on the device is never written. Node itself is not included: devices run
 * their distribution's or NodeSource's Node 20+.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const EXTERNALS = ["better-sqlite3", "onnxruntime-node", "pino", "pino-pretty"];
/** Dependencies used only by install scripts (prebuilt downloads), never at run time. */
const INSTALL_ONLY = new Set(["prebuild-install", "adm-zip", "global-agent"]);
const ELF_MACHINE: Record<PackageArch, number> = { x64: 0x3e, arm64: 0xb7 };

export interface AgentPackage {
  tarball: string;
  bytes: number;
  /** Bytes of the unpacked tree. */
  unpackedBytes: number;
  arch: PackageArch;
}

/** Node's resolution from `fromDir`: the nearest node_modules/<name> upwards, within the repo. */
async function resolvePackageDir(name: string, fromDir: string): Promise<string> {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, "node_modules", name);
    if (await stat(join(candidate, "package.json")).catch(() => null)) return candidate;
    if (dir === ROOT || dir === dirname(dir)) throw new Error(`package ${name} not found from ${fromDir}`);
    dir = dirname(dir);
  }
}

/** The runtime dependency closure of the externals, as package directories under the repo. */
async function dependencyClosure(): Promise<string[]> {
  const seen = new Set<string>();
  const queue = await Promise.all(EXTERNALS.map((n) => resolvePackageDir(n, ROOT)));
  while (queue.length > 0) {
    const dir = queue.pop()!;
    if (seen.has(dir)) continue;
    seen.add(dir);
    const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>;
    };
    for (const dep of Object.keys(pkg.dependencies ?? {})) {
      if (!INSTALL_ONLY.has(dep)) queue.push(await resolvePackageDir(dep, dir));
    }
  }
  return [...seen].sort();
}

/** What of a dependency's directory the device needs (relative path inside the package dir). */
function keep(pkgName: string, rel: string, target: PackageArch): boolean {
  if (/(^|\/)node_modules(\/|$)/.test(rel)) return false; // nested packages are copied as their own entries
  // Type declarations, docs, sources maps, and the test and benchmark folders many packages publish.
  if (/\.(md|ts|mts|cts|map)$/.test(rel)) return false;
  if (/^(test|tests|__tests__|benchmarks?|docs|examples?|\.github)(\/|$)/.test(rel)) return false;
  if (pkgName === "onnxruntime-node") {
    if (rel.startsWith("script")) return false;
    const m = /^bin\/napi-v\d+\/([^/]+)(?:\/([^/]+))?/.exec(rel);
    if (m) return m[1] === "linux" && (m[2] === undefined || m[2] === target);
  }
  if (pkgName === "better-sqlite3") {
    // The SQLite amalgamation and C++ sources compile the addon; only the addon runs.
    if (rel.startsWith("deps") || rel.startsWith("src")) return false;
    if (rel.startsWith("build/")) return rel === "build/Release" || rel === "build/Release/better_sqlite3.node";
  }
  return true;
}

async function copyFiltered(from: string, to: string, pkgName: string, target: PackageArch): Promise<void> {
  await cp(from, to, {
    recursive: true,
    filter: (src) => {
      const rel = relative(from, src).split("\\").join("/");
      return rel === "" || keep(pkgName, rel, target);
    },
  });
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** e_machine of an ELF file, or null when the file is not ELF. */
async function elfMachine(path: string): Promise<number | null> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(20);
    await fh.read(head, 0, 20, 0);
    if (head.readUInt32BE(0) !== 0x7f454c46) return null;
    return head.readUInt16LE(18);
  } finally {
    await fh.close();
  }
}

/** Refuses a package holding a native binary the target cannot load (names each one). */
async function checkNativeBinaries(stage: string, target: PackageArch): Promise<void> {
  const wrong: string[] = [];
  for (const file of await walk(stage)) {
    if (!/\.node$|\.so(\.\d+)*$/.test(file)) continue;
    const machine = await elfMachine(file);
    if (machine !== ELF_MACHINE[target]) wrong.push(`${relative(stage, file)} (ELF machine ${machine ?? "none"})`);
  }
  if (wrong.length > 0) {
    throw new Error(`native binaries not built for linux-${target}:\n  ${wrong.join("\n  ")}`);
  }
}

const LAUNCHER = `#!/bin/sh
# EdgeFleet edge agent launcher: runs the bundled agent with its V8 flags (dist/agent/node-flags,
# see docs/operations.md "Agent package"). EDGEFLEET_NODE picks the node binary (default: node on PATH).
here="$(cd "$(dirname "$0")/.." && pwd)"
exec "\${EDGEFLEET_NODE:-node}" $(cat "$here/dist/agent/node-flags") "$here/dist/agent/edge-agent.js" "$@"
`;

/** `gzipLevel` (default 9, the smallest download) may be lowered where build time matters more (tests). */
export async function packageAgent(opts: {
  arch: PackageArch;
  outDir: string;
  gzipLevel?: number;
}): Promise<AgentPackage> {
  const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as Record<string, unknown>;
  const work = await mkdtemp(join(tmpdir(), "ef-package-"));
  const stage = join(work, "edgefleet-agent");
  try {
    await buildAgent(join(stage, "dist"));
    const native = opts.arch === hostArch() ? null : await crossBuildNative(opts.arch, work);
    if (native) {
      for (const [rel, file] of Object.entries(native.addons)) await cp(file, join(stage, rel));
    }
    for (const dir of await dependencyClosure()) {
      const rel = relative(ROOT, dir);
      const name = rel
        .split("/node_modules/")
        .at(-1)!
        .replace(/^node_modules\//, "");
      await copyFiltered(dir, join(stage, rel), name, opts.arch);
    }
    if (native)
      await cp(native.betterSqlite3, join(stage, "node_modules/better-sqlite3/build/Release/better_sqlite3.node"));
    await checkNativeBinaries(stage, opts.arch);

    await cp(join(ROOT, "device-profiles"), join(stage, "device-profiles"), { recursive: true });
    await mkdir(join(stage, "scripts"), { recursive: true });
    await cp(join(ROOT, "scripts/install-agent.sh"), join(stage, "scripts/install-agent.sh"));
    await mkdir(join(stage, "bin"), { recursive: true });
    await writeFile(join(stage, "bin/edge-agent"), LAUNCHER);
    await chmod(join(stage, "bin/edge-agent"), 0o755);
    // packageRoot() finds the tree by this file's name; the version is the agent's reported one.
    const manifest = {
      name: pkg.name,
      version: pkg.version,
      description: `EdgeFleet edge agent (bundled, linux-${opts.arch})`,
      type: "module",
      license: pkg.license,
      engines: pkg.engines,
      os: ["linux"],
      cpu: [opts.arch],
    };
    await writeFile(join(stage, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);

    await mkdir(opts.outDir, { recursive: true });
    const tarball = join(opts.outDir, `edgefleet-agent-${String(pkg.version)}-linux-${opts.arch}.tar.gz`);
    await tarCreate({ gzip: { level: opts.gzipLevel ?? 9 }, file: tarball, cwd: work, portable: true }, [
      "edgefleet-agent",
    ]);
    let unpackedBytes = 0;
    for (const f of await walk(stage)) unpackedBytes += (await stat(f)).size;
    return { tarball, bytes: (await stat(tarball)).size, unpackedBytes, arch: opts.arch };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const value = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const arch = value("--arch") ?? hostArch();
  if (arch !== "x64" && arch !== "arm64") {
    console.error(`package:agent: --arch must be x64 or arm64 (got ${arch})`);
    process.exit(2);
  }
  const started = Date.now();
  console.error(`package:agent: building linux-${arch}…`);
  const out = await packageAgent({ arch, outDir: value("--out") ?? join(ROOT, "dist/packages") });
  const mb = (n: number) => (n / 1e6).toFixed(1);
  console.error(
    `package:agent: ${out.tarball}: ${mb(out.bytes)} MB compressed, ${mb(out.unpackedBytes)} MB unpacked (${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );
}

import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The installed package's root: the nearest directory above `fromUrl` holding this package's
 * package.json. Files shipped beside the code (device-profiles/, package.json for the version) are
 * found from here, so the same code works from the sources (agent/config/…) and from the esbuild
 * bundle (dist/agent/edge-agent.js, issue 16), whose depth differs.
 */
export function packageRoot(fromUrl: string): string {
  let dir = dirname(fileURLToPath(fromUrl));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "edgefleet") {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`no edgefleet package.json above ${fileURLToPath(fromUrl)}`);
    dir = up;
  }
}

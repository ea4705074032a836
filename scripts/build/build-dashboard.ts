import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleDashboard, DASHBOARD_PREBUILT } from "../../fleet-server/ui/assets.js";

/**
 * `npm run build:dashboard` (issue 15): the dashboard's script as dist/ui/app.js, for an install
 * without devDependencies (no esbuild to bundle it on first request). Run it after `build:agent`,
 * which empties dist/.
 */
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await mkdir(dirname(DASHBOARD_PREBUILT), { recursive: true });
  const js = await bundleDashboard(DASHBOARD_PREBUILT);
  console.log(`${DASHBOARD_PREBUILT} (${js.length} bytes)`);
}

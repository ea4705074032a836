import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { hashPassword } from "../../fleet-server/devices/password.js";
import { openDatabase } from "../../fleet-server/store/db.js";
import { createDeviceRepo } from "../../fleet-server/store/device-repo.js";
import type { BaselineInput } from "../../shared/schemas/baseline.js";
import { writeTinyModel } from "../helpers/tiny-models.js";
import type { Harness } from "./fleet-harness.js";

/** Shared pieces of the dashboard browser test (issue 15). */

export const MODEL = "dash-tiny";
/** Screenshots and the load report: gitignored, kept after the run for a look. */
export const OUTPUT = fileURLToPath(new URL("../../test-output/dashboard/", import.meta.url));

/** Debian's chromium, driven by playwright-core (no browser download at install time). */
export async function launchBrowser(): Promise<Browser> {
  await mkdir(OUTPUT, { recursive: true });
  const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    throw new Error(
      `no Chromium at ${executablePath}: apt-get install -y chromium (as .ci/run does) or set CHROMIUM_PATH`,
    );
  }
  return chromium.launch({ executablePath, args: ["--no-sandbox"] });
}

/** A drift baseline on the tiny model's input values 0..10 (what the test's requests are drawn from). */
export const TINY_BASELINE: BaselineInput = {
  version: 1,
  source: "dashboard e2e",
  features: [
    {
      name: "x_values",
      source: "input",
      tensor: "x",
      reduce: "values",
      edges: [0, 2, 4, 6, 8, 10],
      counts: [20, 20, 20, 20, 20],
    },
  ],
};

/** Publishes a tiny-model version (fp32 only: no int8 build to wait for), optionally for arm64 only. */
export async function pushTinyVersion(
  h: Harness,
  dir: string,
  version: string,
  scale: number,
  opts: { armOnly?: boolean } = {},
): Promise<void> {
  const path = await writeTinyModel(dir, "linear", { scale });
  const up = await h.api.upload(path);
  await h.api.createModel({
    name: MODEL,
    version,
    upload: up.sha256,
    samples: [{ name: "ones", inputs: { x: { datatype: "FP32", shape: [1, 4], data: [1, 1, 1, 1] } } }],
    quantize: "none",
    baseline: TINY_BASELINE,
    lineage: { source: `git:edgefleet-tests@${version}`, metrics: { accuracy: 0.97 } },
    ...(opts.armOnly ? { compatibility: { arch: ["arm64"] } } : {}),
  });
}

/**
 * `count` device records written straight into the server's SQLite (as enrollment would, one shared
 * password hash): 1,000 scrypt enrollments would take longer than the whole test.
 */
export async function insertDeviceRecords(root: string, count: number): Promise<void> {
  const db = openDatabase(join(root, "server"));
  try {
    const repo = createDeviceRepo(db);
    const passwordHash = await hashPassword("not-used-by-any-agent");
    const now = new Date().toISOString();
    db.transaction(() => {
      for (let i = 0; i < count; i++) {
        const id = `bulk-${String(i).padStart(4, "0")}`;
        repo.insert({
          id,
          passwordHash,
          tags: { ring: `r${i % 5}`, site: `s${i % 17}` },
          profile: i % 3 ? "generic-x64" : "raspberry-pi-4",
          now,
        });
      }
    })();
  } finally {
    db.close();
  }
}

/** Logs in through the form; resolves once the header shows the role. */
export async function logIn(page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(`${baseUrl}/ui/`);
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForSelector("#role");
}

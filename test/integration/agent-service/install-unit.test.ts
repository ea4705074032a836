import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir } from "../../helpers/temp-dir.js";

/**
 * The unit scripts/install-agent.sh writes (issue 16): staged with --destdir, it declares the notify
 * protocol the agent speaks (test/integration/agent-service/systemd-notify.test.ts) and passes
 * `systemd-analyze verify` where systemd's tools are installed.
 */
const tmp = await makeTempDir("ef-unit-");
afterAll(() => tmp.cleanup());

describe("install-agent.sh unit", () => {
  it("Type=notify with a watchdog, hardened, and valid to systemd-analyze", () => {
    writeFileSync(join(tmp.path, "pw"), "secret\n");
    writeFileSync(join(tmp.path, "root.json"), "{}\n");
    const stage = join(tmp.path, "stage");
    execFileSync("bash", [
      "scripts/install-agent.sh",
      ...["--device-id", "pi-1", "--mqtt-url", "mqtt://localhost:1883"],
      ...["--password-file", join(tmp.path, "pw"), "--root-json", join(tmp.path, "root.json")],
      ...["--destdir", stage],
    ]);
    const unitPath = join(stage, "etc/systemd/system/edgefleet-agent.service");
    const unit = readFileSync(unitPath, "utf8");
    const keys = new Map(
      unit
        .split("\n")
        .filter((l) => /^[A-Za-z]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)] as const),
    );
    expect(keys.get("Type")).toBe("notify");
    expect(keys.get("NotifyAccess")).toBe("main");
    expect(Number(keys.get("WatchdogSec"))).toBeGreaterThan(0);
    for (const k of ["NoNewPrivileges", "ProtectSystem", "PrivateTmp", "RuntimeDirectory", "StateDirectory", "User"]) {
      expect(keys.has(k), k).toBe(true);
    }
    const analyze = spawnSync("systemd-analyze", ["verify", unitPath], { encoding: "utf8" });
    if (analyze.error) return void console.warn("systemd-analyze not installed: unit syntax not verified");
    expect(analyze.status, analyze.stderr).toBe(0);
  });
});

import { execFile } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { build } from "esbuild";
import { afterAll, describe, expect, it } from "vitest";
import { MQTT_TRANSPORT_STUBS, mqttTransportStubs } from "../../../scripts/build/lazy-transports.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const dir = join(REPO, `.test-dist-lazy-transports-${process.pid}`);

/**
 * A probe bundled the way build-agent.ts bundles the agent: an mqtt:// client must not load the
 * WebSocket transport (`ws` pulls in https and zlib), and a ws:// client must still get it, through
 * the stub, from mqtt's own code.
 */
const PROBE = `
import mqtt from "mqtt";
const loaded = () => ["https", "zlib"].filter((m) => process.moduleLoadList.includes("NativeModule " + m));
const tcp = mqtt.connect("mqtt://127.0.0.1:1", { reconnectPeriod: 0, connectTimeout: 500 });
await new Promise((r) => setTimeout(r, 200));
const afterTcp = loaded();
tcp.end(true);
const ws = mqtt.connect("ws://127.0.0.1:1", { reconnectPeriod: 0, connectTimeout: 500 });
await new Promise((r) => setTimeout(r, 200));
ws.end(true);
console.log(JSON.stringify({ afterTcp, afterWs: loaded() }));
process.exit(0);
`;

describe("agent bundle: mqtt transports load on first use (issue 16)", () => {
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("an mqtt:// client loads no WebSocket transport; a ws:// client still gets it", async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "probe.ts"), PROBE);
    const stubs = mqttTransportStubs();
    await build({
      absWorkingDir: REPO,
      entryPoints: [join(dir, "probe.ts")],
      outfile: join(dir, "probe.mjs"),
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      banner: { js: "import { createRequire as __r } from 'node:module'; const require = __r(import.meta.url);" },
      plugins: [stubs.plugin],
      logLevel: "error",
    });
    expect([...stubs.applied].sort()).toEqual([...MQTT_TRANSPORT_STUBS].sort());
    const { stdout } = await promisify(execFile)(process.execPath, [join(dir, "probe.mjs")], { cwd: REPO });
    const out = JSON.parse(stdout.trim().split("\n").at(-1)!) as { afterTcp: string[]; afterWs: string[] };
    expect(out.afterTcp).toEqual([]);
    expect(out.afterWs).toEqual(["https", "zlib"]);
  });
});

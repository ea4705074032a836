import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FleetServer } from "../../fleet-server/main.js";
import { EXIT } from "../../scripts/fleetctl/exit-codes.js";
import { runFleetctl } from "../helpers/fleetctl-cli.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness } from "./fleet-harness.js";

/**
 * Issue 21, "every command has --json output and documented exit codes": fleetctl as real processes,
 * the read commands against a real server and the offline key commands on files, each with --json:
 * stdout must be one JSON document and the exit 0; a viewer token on an admin command exits 8.
 */
describe("fleetctl --json and exit codes", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let server: FleetServer;
  let viewer = "";
  const cli = (args: string[], token = server.adminToken) => runFleetctl(server, token, args);

  beforeAll(async () => {
    tmp = await makeTempDir("ef-json-");
    h = await startHarness(tmp.path);
    server = h.server;
    viewer = (await h.api.createToken({ name: "viewer", role: "viewer" })).token;
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  const keysDir = () => join(tmp.path, "offline");
  const COMMANDS: string[][] = [
    ["models", "list"],
    ["rollouts", "list"],
    ["devices", "list"],
    ["tokens", "list"],
    ["audit"],
    ["models", "stale-devices"],
    ["keys", "init", "--data-dir", "OFFLINE"],
    ["keys", "rotate", "director", "--data-dir", "OFFLINE"],
  ];

  it("each command's --json output is one JSON document, exit 0", async () => {
    for (const args of COMMANDS) {
      const r = await cli(["--json", ...args.map((a) => (a === "OFFLINE" ? keysDir() : a))]);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(EXIT.OK);
      expect(() => JSON.parse(r.stdout), `${args.join(" ")} printed: ${r.stdout}`).not.toThrow();
    }
    const rotated = JSON.parse((await cli(["--json", "keys", "rotate", "release", "--data-dir", keysDir()])).stdout);
    expect(rotated).toMatchObject({ role: "release", rootVersion: 3, threshold: 1 });
  }, 120_000);

  it("a viewer token on an admin command: exit 8 (unauthorized), with the server's code", async () => {
    const r = await cli(["tokens", "list"], viewer);
    expect(r.code).toBe(EXIT.UNAUTHORIZED);
    expect(r.stderr).toMatch(/FORBIDDEN/);
    const none = await cli(["models", "list"], "ef_not-a-token");
    expect(none.code).toBe(EXIT.UNAUTHORIZED);
  }, 60_000);
});

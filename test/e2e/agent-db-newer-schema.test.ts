import { readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../../shared/hash.js";
import { waitFor } from "../helpers/agent-process.js";
import { tinyInput } from "../helpers/tiny-models.js";
import { waitForServing } from "./fleet-harness.js";
import { expectedY, MODEL, modelOf, startCommittedTiny, status, waitStatus } from "./runtime-support.js";

/**
 * Issue 23: a device downgraded to an agent older than its databases. The agent.db of a newer agent
 * (schema version above what this agent knows) is refused, not migrated backwards and not written:
 * the agent keeps running (the setup file fails the test if it exits), reports STORAGE_FAILED with
 * cause SCHEMA_NEWER, installs the retained desired version again on an in-memory database, and
 * leaves the newer file byte for byte as it was for the next upgrade.
 */
const ID = "db-newer";
const X: [number, number, number, number] = [1, 2, 3, 4];

interface StorageFault {
  area: string;
  error: { code: string; message: string; details?: { cause?: string; found?: number } };
}

describe("e2e: agent.db written by a newer agent", () => {
  let env: Awaited<ReturnType<typeof startCommittedTiny>>;

  beforeAll(async () => {
    env = await startCommittedTiny(ID);
  }, 180_000);
  afterAll(async () => {
    await env?.close();
  });

  it("is refused and left untouched; the agent keeps serving, reports SCHEMA_NEWER and runs the desired version from memory", async () => {
    const path = join(env.h.root, ID, "agent.db");
    await env.h.agents.get(ID)!.kill("SIGTERM");
    const db = new Database(path);
    db.pragma("user_version = 99");
    db.pragma("wal_checkpoint(TRUNCATE)");
    db.close();
    const hash = sha256Hex(readFileSync(path));

    const agent = await env.h.restartAgent(ID);
    const client = await waitForServing(agent, MODEL, 120_000);
    const fault = await waitFor("the agent-db fault", async () => {
      const st = (await status(client)) as { storage?: { faults: StorageFault[] } };
      return st.storage?.faults.find((f) => f.area === "agent-db") ?? null;
    });
    expect(fault.error).toMatchObject({ code: "STORAGE_FAILED", details: { cause: "SCHEMA_NEWER", found: 99 } });
    expect(fault.error.message).toContain("newer than this agent knows");
    await waitStatus(client, "1.0.0 committed again", (s) => modelOf(s)?.committed?.version === "1.0.0");
    const res = await client.inferTensors(MODEL, tinyInput(X));
    expect(res.model_version).toBe("1.0.0");
    expect(res.outputs[0]?.data).toEqual(expectedY(1, X));

    await agent.kill("SIGTERM"); // a clean stop tries to write memory back: never over a newer file
    expect(sha256Hex(readFileSync(path))).toBe(hash);
  });
});

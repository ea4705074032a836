import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { makeTempDir } from "../../helpers/temp-dir.js";

const KEY_STORE = fileURLToPath(new URL("../../../fleet-server/keys/key-store.ts", import.meta.url));

/**
 * Each child loads tsx and the key store, says "ready", waits for a line on stdin, then creates
 * (or reads) the keys and prints what it will sign and authenticate with.
 */
const CHILD = `
import { createInterface } from "node:readline";
const { loadOrCreateKeys } = await import(${JSON.stringify(KEY_STORE)});
const rl = createInterface({ input: process.stdin });
process.stdout.write("ready\\n");
rl.once("line", (dir) => {
  const k = loadOrCreateKeys(dir, new Date());
  process.stdout.write(JSON.stringify({
    director: k.director.keyid, release: k.release.keyid, root: JSON.stringify(k.signedRoot),
    admin: k.adminToken, mqtt: k.serverMqtt.password,
  }) + "\\n", () => process.exit(0));
});
`;

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

function lines(child: ChildProcess): AsyncIterator<string> {
  let buf = "";
  const queue: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
      else queue.push(line);
    }
  });
  return {
    next: () =>
      new Promise((resolve) => {
        const l = queue.shift();
        if (l !== undefined) resolve({ value: l, done: false });
        else waiters.push((v) => resolve({ value: v, done: false }));
      }),
  };
}

describe("keys on a data directory shared by replicas (issue 14)", () => {
  it("replicas creating the keys at the same moment all end up with the same keys", async () => {
    const dir = await makeTempDir("keys-");
    try {
      const started = Array.from({ length: 4 }, () => {
        const c = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", CHILD], {
          stdio: ["pipe", "pipe", "inherit"],
        });
        children.push(c);
        // Listened for from the start: a child may exit before the others have answered.
        return { c, out: lines(c), exited: once(c, "exit") };
      });
      for (const s of started) expect((await s.out.next()).value).toBe("ready");
      // Released together: each generates its own keys, then links them into place.
      for (const s of started) s.c.stdin!.write(`${dir.path}\n`);
      const seen = await Promise.all(started.map(async (s) => JSON.parse((await s.out.next()).value as string)));
      await Promise.all(started.map((s) => s.exited));
      for (const k of seen.slice(1)) expect(k).toEqual(seen[0]);
    } finally {
      await dir.cleanup();
    }
  });
});

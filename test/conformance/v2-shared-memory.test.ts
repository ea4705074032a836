import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, readlink, rm, symlink, truncate } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { peerCredentialsAvailable } from "../../agent/api/peer-credentials.js";
import { createSocketApi, type SocketApi } from "../../agent/api/socket-api.js";
import {
  inferShared,
  regionStatus,
  registerRegion,
  SharedMemoryObject,
  unregisterRegion,
} from "../../agent/client/shm-client.js";
import { SocketApiError, SocketClient } from "../../agent/client/socket-client.js";
import { type AgentModelRuntime, createModelRuntime } from "../../agent/runtime/runtime.js";
import { systemClock } from "../../shared/clock.js";
import { testLog, testProfile } from "../integration/agent-runtime/fixtures.js";
import { datatypeModel, installModel, manifestFor } from "./datatype-models.js";

/**
 * The shared-memory extension (issue 13; Triton's system shared memory over the agent socket):
 * register, infer with inputs and outputs in regions, status, unregister; every bad region parameter
 * is a 400 and the agent keeps serving; regions belong to the uid that registered them.
 * Real /dev/shm objects, a real onnxruntime session, the real socket API.
 */
let root: string;
let runtime: AgentModelRuntime;
let api: SocketApi;
let client: SocketClient;
const objects: SharedMemoryObject[] = [];
const tag = `ef-shm-${process.pid}-${Date.now()}`;

/** x [2,3] FP32 → y = x, z = x + x (datatype-models.ts). */
const X = Float32Array.from([1, 2, 3, 4, 5, 6]);
const BYTES = X.byteLength; // 24

function object(name: string, size: number): SharedMemoryObject {
  const o = SharedMemoryObject.create(`${tag}-${name}`, size);
  objects.push(o);
  return o;
}

async function expectRefused(p: Promise<unknown>, status: number, message: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, "the request should have been refused").toBeInstanceOf(SocketApiError);
  const e = err as SocketApiError;
  expect({ status: e.status, error: (e.body as { error: string }).error }).toMatchObject({
    status,
    error: expect.stringMatching(message),
  });
}

/** The agent still answers a plain JSON request correctly after a refusal. */
async function stillServing(): Promise<void> {
  const r = await client.infer("fp", [{ name: "x", datatype: "FP32", shape: [1, 3], data: [7, 8, 9] }]);
  expect(r.outputs.find((o) => o.name === "z")?.data).toEqual([14, 16, 18]);
}

beforeAll(async () => {
  expect(peerCredentialsAvailable(), "the peer-credentials addon must be built by npm ci").toBe(true);
  root = await mkdtemp(path.join(os.tmpdir(), "ef-conf-shm-"));
  runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
  const fp = manifestFor("fp", "FP32");
  await runtime.activate(await runtime.load(await installModel(root, "fp", "1.0.0", datatypeModel("FP32"), fp)));
  api = createSocketApi({
    log: testLog,
    runtime,
    status: () => ({}),
    socketPath: path.join(root, "a.sock"),
    version: "1",
  });
  await api.listen();
  client = new SocketClient(path.join(root, "a.sock"));
}, 300_000);

afterAll(async () => {
  await api?.close();
  await runtime?.close();
  for (const o of objects) o.destroy();
  await rm(root, { recursive: true, force: true });
});

describe("system shared memory: the happy path", () => {
  it("GET /v2 lists the extension", async () => {
    const r = await client.json<{ extensions: string[] }>("GET", "/v2");
    expect(r.extensions).toContain("system_shared_memory");
  });

  it("register, infer with inputs and outputs in regions, status, unregister", async () => {
    const input = object("in", 64 + BYTES);
    const output = object("out", 4096);
    input.write(64, new Uint8Array(X.buffer));
    await registerRegion(client, "in", { key: input.key, byteSize: BYTES, offset: 64 });
    await registerRegion(client, "out", { key: output.key, byteSize: 1024, offset: 512 });
    expect(await regionStatus(client)).toEqual([
      { name: "in", key: input.key, offset: 64, byte_size: BYTES },
      { name: "out", key: output.key, offset: 512, byte_size: 1024 },
    ]);
    expect(await regionStatus(client, "out")).toHaveLength(1);

    const r = await inferShared(
      client,
      "fp",
      [{ name: "x", datatype: "FP32", shape: [2, 3], region: "in", byteSize: BYTES }],
      [
        { name: "y", region: "out", byteSize: BYTES, offset: 0 },
        { name: "z", region: "out", byteSize: BYTES, offset: 100 },
      ],
    );
    // No tensor data in the answer: each output names where it was written and how many bytes.
    expect(r.outputs).toEqual([
      {
        name: "y",
        datatype: "FP32",
        shape: [2, 3],
        parameters: { shared_memory_region: "out", shared_memory_byte_size: BYTES },
      },
      {
        name: "z",
        datatype: "FP32",
        shape: [2, 3],
        parameters: { shared_memory_region: "out", shared_memory_byte_size: BYTES },
      },
    ]);
    const y = output.read(512, BYTES);
    const z = output.read(612, BYTES);
    expect([...new Float32Array(y.buffer, y.byteOffset, 6)]).toEqual([...X]);
    expect([...new Float32Array(z.buffer, z.byteOffset, 6)]).toEqual([...X].map((v) => v * 2));

    // A region can be mixed with JSON: an output not named in a region comes back as data.
    const mixed = await inferShared(
      client,
      "fp",
      [{ name: "x", datatype: "FP32", shape: [2, 3], region: "in", byteSize: BYTES }],
      [{ name: "z", region: "out", byteSize: BYTES }],
    );
    expect(mixed.outputs.map((o) => o.name)).toEqual(["z"]);

    await unregisterRegion(client, "in");
    expect((await regionStatus(client)).map((s) => s.name)).toEqual(["out"]);
    await unregisterRegion(client);
    expect(await regionStatus(client)).toEqual([]);
  });
});

describe("system shared memory: the documented Python client", () => {
  // The example in docs/protocol.md, run as written (standard library only) against this agent.
  const python = ["/usr/bin/python3", "/usr/local/bin/python3"].find((p) => existsSync(p));
  it.skipIf(!python)(
    "docs/protocol.md's Python example registers, infers and reads the output from /dev/shm",
    async () => {
      const doc = await readFile(path.join(import.meta.dirname, "../../docs/protocol.md"), "utf8");
      const section = doc.slice(doc.indexOf("### Shared memory"));
      const script = /```python\n([\s\S]*?)```/.exec(section)?.[1];
      expect(script, "docs/protocol.md has the Python example").toBeDefined();
      const run = script!.replace("/run/edgefleet/agent.sock", path.join(root, "a.sock"));
      const out = await new Promise<string>((resolve, reject) =>
        execFile(python!, ["-c", run], (err, stdout, stderr) =>
          err ? reject(new Error(stderr || String(err))) : resolve(stdout),
        ),
      );
      expect(out.trim()).toBe(
        "{'shared_memory_region': 'io', 'shared_memory_byte_size': 24} (2.0, 4.0, 6.0, 8.0, 10.0, 12.0)",
      );
      expect(await regionStatus(client)).toEqual([]);
    },
  );
});

describe("system shared memory: every bad region parameter is a 400 and the agent keeps serving", () => {
  let input: SharedMemoryObject;
  beforeAll(async () => {
    input = object("bad-in", 256);
    input.write(0, new Uint8Array(X.buffer));
    await registerRegion(client, "bad-in", { key: input.key, byteSize: 256 });
    await registerRegion(client, "bad-out", { key: object("bad-out", 256).key, byteSize: 256 });
  });
  afterAll(async () => {
    await unregisterRegion(client).catch(() => undefined);
  });

  const x = (parameters: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    inputs: [{ name: "x", datatype: "FP32", shape: [2, 3], parameters, ...extra }],
  });
  const region = { shared_memory_region: "bad-in", shared_memory_byte_size: BYTES };
  const infers: [string, unknown, RegExp][] = [
    ["unknown region", x({ ...region, shared_memory_region: "nope" }), /unable to find shared memory region "nope"/],
    ["window past the region", x({ ...region, shared_memory_offset: 240 }), /exceeds region "bad-in"/],
    ["huge offset", x({ ...region, shared_memory_offset: Number.MAX_SAFE_INTEGER }), /exceeds region/],
    ["negative offset", x({ ...region, shared_memory_offset: -8 }), /shared_memory_offset" has an invalid value/],
    [
      "fractional size",
      x({ ...region, shared_memory_byte_size: 2.5 }),
      /shared_memory_byte_size" has an invalid value/,
    ],
    [
      "size does not match the shape",
      x({ ...region, shared_memory_byte_size: 20 }),
      /does not match FP32 shape \[2,3\]/,
    ],
    ["region without a size", x({ shared_memory_region: "bad-in" }), /needs shared_memory_byte_size/],
    ["size without a region", x({ shared_memory_byte_size: BYTES }), /without shared_memory_region/],
    ["region and data", x(region, { data: [1, 2, 3, 4, 5, 6] }), /also data or binary_data_size/],
    [
      "region name not a string",
      x({ ...region, shared_memory_region: 7 }),
      /shared_memory_region" has an invalid value/,
    ],
    [
      "output window past the region",
      {
        ...x(region),
        outputs: [
          {
            name: "y",
            parameters: { shared_memory_region: "bad-out", shared_memory_byte_size: 64, shared_memory_offset: 250 },
          },
        ],
      },
      /output "y": shared_memory_offset 250/,
    ],
    [
      "output region too small for the output",
      {
        ...x(region),
        outputs: [{ name: "y", parameters: { shared_memory_region: "bad-out", shared_memory_byte_size: 8 } }],
      },
      /output is 24 bytes, shared_memory_byte_size is 8/,
    ],
    [
      "output region and binary_data",
      {
        ...x(region),
        outputs: [
          {
            name: "y",
            parameters: { shared_memory_region: "bad-out", shared_memory_byte_size: 64, binary_data: true },
          },
        ],
      },
      /also binary_data/,
    ],
  ];
  for (const [name, body, message] of infers) {
    it(`infer: ${name}`, async () => {
      await expectRefused(client.json("POST", "/v2/models/fp/infer", body), 400, message);
      await stillServing();
    });
  }

  const registers: [string, string, unknown, RegExp][] = [
    ["already registered", "bad-in", { key: "/whatever", byte_size: 8 }, /already registered/],
    ["key with a path", "r1", { key: "/../etc/passwd", byte_size: 8 }, /not a shm_open name/],
    ["key that does not exist", "r2", { key: `/${tag}-missing`, byte_size: 8 }, /does not exist/],
    ["window past the object", "r3", { key: "KEY", offset: 200, byte_size: 100 }, /exceeds the object's 256 bytes/],
    ["zero size", "r4", { key: "KEY", byte_size: 0 }, /byte_size/],
    ["negative offset", "r5", { key: "KEY", offset: -1, byte_size: 8 }, /offset/],
    ["unknown field", "r6", { key: "KEY", byte_size: 8, mode: "rw" }, /unrecognized key|mode/i],
    ["bad region name", "a b", { key: "KEY", byte_size: 8 }, /region name/],
  ];
  for (const [name, region_, body, message] of registers) {
    it(`register: ${name}`, async () => {
      const b = JSON.parse(JSON.stringify(body).replace("KEY", input.key)) as { key: string; byte_size: number };
      await expectRefused(
        client.json("POST", `/v2/systemsharedmemory/region/${encodeURIComponent(region_)}/register`, b),
        400,
        message,
      );
      await stillServing();
    });
  }

  it("register: a symbolic link is refused, not followed", async () => {
    const link = `/dev/shm/${tag}-link`;
    await symlink(input.path, link);
    try {
      await expectRefused(registerRegion(client, "link", { key: `/${tag}-link`, byteSize: 8 }), 400, /symbolic link/);
    } finally {
      await rm(link, { force: true });
    }
  });

  it("a region truncated by its owner after registration is a 400, not a short tensor", async () => {
    const o = object("shrinks", 256);
    await registerRegion(client, "shrinks", { key: o.key, byteSize: 256 });
    await truncate(o.path, 8);
    await expectRefused(
      client.json(
        "POST",
        "/v2/models/fp/infer",
        x({ shared_memory_region: "shrinks", shared_memory_byte_size: BYTES }),
      ),
      400,
      /truncated to 8 bytes/,
    );
    await stillServing();
  });

  it("unregister or status of an unknown region is a 400", async () => {
    await expectRefused(unregisterRegion(client, "never"), 400, /unable to find/);
    await expectRefused(regionStatus(client, "never"), 400, /unable to find/);
  });
});

describe("system shared memory: a model host killed mid-request", () => {
  it("leaves no stuck request, no lost or leaked region and no leaked descriptor; the next request is served", async () => {
    // Descriptors of this test's /dev/shm objects held by this process (the agent's and the client's).
    const fds = async () => {
      let n = 0;
      for (const fd of await readdir("/proc/self/fd")) {
        const target = await readlink(`/proc/self/fd/${fd}`).catch(() => "");
        if (target.includes(`${tag}-kill-`)) n++;
      }
      return n;
    };
    const rows = 200_000; // x [200000, 3] FP32: 2.4 MB per request, so the kill lands mid-transfer for some
    const bytes = rows * 3 * 4;
    const input = object("kill-in", bytes);
    const output = object("kill-out", bytes * 2);
    input.write(0, new Uint8Array(Float32Array.from({ length: rows * 3 }, (_, i) => i % 7).buffer));
    await registerRegion(client, "kill-in", { key: input.key, byteSize: bytes });
    await registerRegion(client, "kill-out", { key: output.key, byteSize: bytes * 2 });
    expect(await fds()).toBe(4); // the client's two objects, the agent's two registrations
    const call = () =>
      inferShared(
        client,
        "fp",
        [{ name: "x", datatype: "FP32", shape: [rows, 3], region: "kill-in", byteSize: bytes }],
        [
          { name: "y", region: "kill-out", byteSize: bytes },
          { name: "z", region: "kill-out", byteSize: bytes, offset: bytes },
        ],
      ).then(
        () => "ok",
        (e: unknown) => (e instanceof SocketApiError ? (e.body as { code: string }).code : String(e)),
      );
    const serving = runtime.serving().get("fp")!;
    const pid = runtime.hostPid(serving);
    const calls = Array.from({ length: 24 }, call);
    await new Promise((r) => setTimeout(r, 20));
    process.kill(pid, "SIGKILL");
    const outcomes = await Promise.all(calls);
    expect(outcomes.filter((o) => o !== "ok" && o !== "HOST_CRASHED")).toEqual([]);
    expect(outcomes, "the kill should land while requests are in the host").toContain("HOST_CRASHED");
    // Both regions are still registered, exactly as they were.
    expect((await regionStatus(client)).map((r) => [r.name, r.byte_size])).toEqual([
      ["kill-in", bytes],
      ["kill-out", bytes * 2],
    ]);
    // The restarted host serves from the same regions, and the output is right.
    await expect.poll(() => call(), { timeout: 60_000, interval: 200 }).toBe("ok");
    const z = output.read(bytes, 24);
    expect([...new Float32Array(z.buffer, z.byteOffset, 6)]).toEqual([0, 2, 4, 6, 8, 10]);
    await unregisterRegion(client);
    // Every descriptor the registrations opened is closed again; the client's own two remain.
    expect(await fds()).toBe(2);
  });
});

/** Runs a request as another uid (a child process with dropped privileges) and returns status and body. */
function asUser(
  uid: number,
  socketPath: string,
  method: string,
  urlPath: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  const script = `
    const http = require("node:http");
    const [socketPath, method, path, body] = process.argv.slice(1);
    const req = http.request({ socketPath, method, path, headers: body ? { "content-type": "application/json" } : {} }, (res) => {
      let out = ""; res.on("data", (c) => (out += c)); res.on("end", () => { process.stdout.write(JSON.stringify({ status: res.statusCode, body: out })); });
    });
    req.on("error", (e) => { process.stdout.write(JSON.stringify({ status: 0, body: String(e) })); });
    req.end(body || undefined);`;
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["-e", script, socketPath, method, urlPath, body === undefined ? "" : JSON.stringify(body)],
      {
        uid,
        gid: uid,
      },
    );
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.on("error", reject);
    child.on("close", () => resolve(JSON.parse(out) as { status: number; body: string }));
  });
}

describe("system shared memory: regions belong to the uid that registered them", () => {
  const root_ = process.getuid?.() === 0;
  it.skipIf(!root_)("another user can neither register, see, use nor unregister this user's region", async () => {
    const secret = object("secret", 64);
    secret.write(0, new Uint8Array(X.buffer));
    await registerRegion(client, "mine", { key: secret.key, byteSize: BYTES });
    // Let the other user reach the socket (the agent's socket is 0660 with the apps' group in production).
    await chmod(root, 0o755);
    await chmod(path.join(root, "a.sock"), 0o666);
    const sock = path.join(root, "a.sock");
    const nobody = 65534;

    const reg = await asUser(nobody, sock, "POST", "/v2/systemsharedmemory/region/stolen/register", {
      key: secret.key,
      byte_size: BYTES,
    });
    expect(reg.status).toBe(403);
    expect(JSON.parse(reg.body)).toMatchObject({ code: "FORBIDDEN" });
    expect(reg.body).toMatch(/belongs to another user|cannot be opened/);

    const status = await asUser(nobody, sock, "GET", "/v2/systemsharedmemory/status");
    expect({ status: status.status, body: JSON.parse(status.body) }).toEqual({ status: 200, body: [] });

    const use = await asUser(nobody, sock, "POST", "/v2/models/fp/infer", {
      inputs: [
        {
          name: "x",
          datatype: "FP32",
          shape: [2, 3],
          parameters: { shared_memory_region: "mine", shared_memory_byte_size: BYTES },
        },
      ],
    });
    expect(use.status).toBe(400);
    expect(use.body).toMatch(/unable to find shared memory region \\?"mine\\?"/);

    const unreg = await asUser(nobody, sock, "POST", "/v2/systemsharedmemory/region/mine/unregister");
    expect(unreg.status).toBe(400);
    // Still registered for its owner, who can still use it.
    expect((await regionStatus(client)).map((s) => s.name)).toContain("mine");
    const r = await inferShared(
      client,
      "fp",
      [{ name: "x", datatype: "FP32", shape: [2, 3], region: "mine", byteSize: BYTES }],
      [],
    );
    expect(r.outputs.find((o) => o.name === "z")?.data).toEqual([2, 4, 6, 8, 10, 12]);
    await unregisterRegion(client, "mine");
  });
});

import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { joinBody } from "../../../agent/api/binary-tensors.js";
import type { LoadedVersion } from "../../../agent/runtime/model-runtime.js";
import { reluModel, type ServingFixture, startServingFixture } from "../../../scripts/bench/serving-fixture.js";
import type { RawTensor } from "../../../shared/tensors.js";

/**
 * The agent ↔ host bulk channel under a host killed mid-transfer (issue 13), with a real runtime, a
 * real host process and a real onnxruntime session (y = relu(x)). Each request is 48 MiB each way, far
 * more than the socket buffers hold, so a kill lands while bytes are still on the wire. The caller must
 * get HOST_CRASHED (the runtime's semantics for a request in flight on a host that dies), nothing may
 * stay pending, and the restarted host must serve the next request. Run on both transports: payloads
 * on the socket, and payloads in side files (host-side-payloads.ts, the default for large ones).
 */

const DIMS = [1, 3, 2048, 2048];
const big = (): Record<string, RawTensor> => ({
  x: { type: "float32", dims: DIMS, data: Float32Array.from({ length: 3 * 2048 * 2048 }, (_, i) => (i % 5) - 2) },
});
const small: Record<string, RawTensor> = {
  x: { type: "float32", dims: [1, 3, 2, 2], data: Float32Array.from([-1, 2, -3, 4, 5, -6, 7, -8, 9, -10, 11, -12]) },
};

/** Bytes the process has read and written through syscalls (/proc/<pid>/io), or null without /proc. */
function io(pid: number): { rchar: number; wchar: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/io`, "utf8");
    const num = (k: string) => Number(new RegExp(`^${k}: (\\d+)$`, "m").exec(text)?.[1]);
    return { rchar: num("rchar"), wchar: num("wchar") };
  } catch {
    return null;
  }
}

async function until(what: string, pred: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** A crashed request must settle; a short bound turns a stuck one into a failure instead of a hang. */
function settles<T>(p: Promise<T>, ms = 30_000): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return Promise.race([
    p.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    ),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error("request is stuck")), ms)),
  ]);
}

/** Side-payload files of this process's hosts (/dev/shm/edgefleet-host-<our pid>-*), by directory. */
function sideFiles(): { dirs: number; files: number } {
  const dirs = readdirSync("/dev/shm").filter((d) => d.startsWith(`edgefleet-host-${process.pid}-`));
  return { dirs: dirs.length, files: dirs.reduce((n, d) => n + readdirSync(`/dev/shm/${d}`).length, 0) };
}

describe.each([
  ["socket", false],
  ["side files", true],
])("agent ↔ host bulk channel (%s): host SIGKILLed mid-transfer", (_transport, sidePayloads) => {
  let fx: ServingFixture;
  let v: LoadedVersion;

  beforeAll(async () => {
    fx = await startServingFixture({ sidePayloads });
    v = await fx.install("relu", "1.0.0", reluModel(), [1, 3, 2, 2]);
  });
  afterAll(async () => {
    await fx?.close();
  });

  async function expectServesAgain(): Promise<void> {
    // Routed to the crashed version, the next request waits for the restarted host (runtime semantics).
    const res = await fx.runtime.inferRaw({ model: "relu", inputs: small });
    expect(Array.from(res.outputs.y!.data as Float32Array)).toEqual([0, 2, 0, 4, 5, 0, 7, 0, 9, 0, 11, 0]);
    expect(fx.runtime.inFlight(v)).toBe(0);
  }

  it("killed while the request is being sent: HOST_CRASHED, then the restarted host serves", async () => {
    const pid = fx.runtime.hostPid(v);
    const pending = fx.runtime.inferRaw({ model: "relu", inputs: big() });
    // The frame is being written now; 48 MiB cannot have crossed the socket in one synchronous write.
    process.kill(pid, "SIGKILL");
    const r = await settles(pending);
    expect(r.ok).toBe(false);
    expect((r as { error: { code?: string } }).error.code).toBe("HOST_CRASHED");
    expect(fx.runtime.inFlight(v)).toBe(0);
    await expectServesAgain();
    expect(fx.runtime.hostPid(v)).not.toBe(pid);
  });

  it("killed while the reply is coming back: HOST_CRASHED, then the restarted host serves", async () => {
    const pid = fx.runtime.hostPid(v);
    const before = io(pid);
    if (!before) return void console.warn("skipped: no /proc/<pid>/io to see the host's transfer progress");
    const inputs = big();
    const bytes = (inputs.x!.data as Float32Array).byteLength;
    const pending = fx.runtime.inferRaw({ model: "relu", inputs });
    await until("the host to read the whole request", () => (io(pid)?.rchar ?? 0) - before.rchar >= bytes);
    // Block this (the agent's) event loop, so the reply piles up in the socket unread, until the host
    // has started writing it; then kill the host with the reply half sent.
    const end = Date.now() + 30_000;
    while ((io(pid)?.wchar ?? 0) - before.wchar < 65_536 && Date.now() < end) {
      /* busy wait: nothing may read the reply meanwhile */
    }
    expect((io(pid)?.wchar ?? 0) - before.wchar).toBeGreaterThanOrEqual(65_536);
    process.kill(pid, "SIGKILL");
    const r = await settles(pending);
    if (sidePayloads && r.ok) {
      // A reply in a side file is sent whole or not at all: it may have been complete before the kill.
      const y = (r.value as { outputs: Record<string, RawTensor> }).outputs.y!.data as Float32Array;
      expect(y.length).toBe(3 * 2048 * 2048);
      expect([y[0], y[1], y[2], y[y.length - 1]]).toEqual([0, 0, 0, Math.max(0, ((y.length - 1) % 5) - 2)]);
      // The reply beat the kill, so the runtime may not have seen the exit yet: a request sent now
      // would be in flight on a dead host and rightly get HOST_CRASHED (CI failure of stop 13). Wait
      // for the restart so the next check tests serving again, not that race.
      await until("the killed host to be restarted", () => fx.runtime.hostPid(v) !== pid);
    } else {
      expect(r.ok).toBe(false);
      expect((r as { error: { code?: string } }).error.code).toBe("HOST_CRASHED");
    }
    await expectServesAgain();
    // The dead host's directory went with it; the live host's holds nothing between requests.
    if (sidePayloads) expect(sideFiles()).toEqual({ dirs: 1, files: 0 });
  });

  it("a big request still round-trips exactly after the crashes", async () => {
    const inputs = big();
    const res = await fx.runtime.inferRaw({ model: "relu", inputs });
    const x = inputs.x!.data as Float32Array;
    const y = res.outputs.y!.data as Float32Array;
    expect(y.length).toBe(x.length);
    let wrong = 0;
    for (let i = 0; i < x.length; i++) if (y[i] !== Math.max(0, x[i]!)) wrong++;
    expect(wrong).toBe(0);
  });

  it("a large binary-extension request over the socket: aligned header, reply streamed whole", async () => {
    const data = Float32Array.from({ length: 3 * 640 * 640 }, (_, i) => (i % 7) - 3);
    const header = {
      inputs: [
        { name: "x", shape: [1, 3, 640, 640], datatype: "FP32", parameters: { binary_data_size: data.byteLength } },
      ],
      parameters: { binary_data_output: true },
    };
    const { body, headerLength } = joinBody(header, [Buffer.from(data.buffer)]);
    expect(headerLength % 8).toBe(0);
    const res = await fx.client.raw("POST", "/v2/models/relu/infer", body, {
      "content-type": "application/octet-stream",
      "inference-header-content-length": String(headerLength),
    });
    expect(res.status).toBe(200);
    const hl = Number(res.headers["inference-header-content-length"]);
    expect(hl % 8).toBe(0);
    expect(Number(res.headers["content-length"])).toBe(res.body.length);
    expect(res.body.length - hl).toBe(data.byteLength);
    const out = JSON.parse(res.body.subarray(0, hl).toString("utf8"));
    expect(out.outputs[0]).toMatchObject({
      name: "y",
      shape: [1, 3, 640, 640],
      parameters: { binary_data_size: data.byteLength },
    });
    const y = new Float32Array(res.body.buffer.slice(res.body.byteOffset + hl, res.body.byteOffset + res.body.length));
    let wrong = 0;
    for (let i = 0; i < data.length; i++) if (y[i] !== Math.max(0, data[i]!)) wrong++;
    expect(wrong).toBe(0);
  });
});

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readFrames, writeFrame } from "../../../agent/runtime/host-channel.js";
import {
  decodeTensors,
  encodeFrame,
  type Frame,
  FrameReader,
  SIDE_FRAME_MAGIC,
} from "../../../agent/runtime/host-frames.js";
import type { TensorEntry } from "../../../agent/runtime/host-headers.js";
import {
  createSideDir,
  SIDE_PAYLOAD_MIN_BYTES,
  type SidePayloads,
  sidePayloadsIn,
} from "../../../agent/runtime/host-side-payloads.js";
import type { EdgeFleetError } from "../../../shared/errors.js";
import type { RawTensor } from "../../../shared/tensors.js";

/**
 * Side payloads of the host channel (issue 13): a large payload crosses as a file in a private
 * directory, the stream carries its header and number only. Real files (a temporary directory),
 * real streams.
 */
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "ef-side-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const big = (n: number, seed = 1): RawTensor => ({
  type: "float32",
  dims: [1, n],
  data: Float32Array.from({ length: n }, (_, i) => ((i * seed) % 1000) / 7),
});

/** Writes `frames` with the sender's side payloads; returns what the receiver decoded and the stream's byte count. */
function roundTrip(
  tensors: Record<string, RawTensor>[],
  sender = sidePayloadsIn(dir, "a"),
  receiver = sidePayloadsIn(dir, "h"),
) {
  const stream = new PassThrough();
  let streamed = 0;
  stream.on("data", (c: Buffer) => (streamed += c.length));
  const got: Frame[] = [];
  const errors: EdgeFleetError[] = [];
  // The receiver's names for incoming files are the sender's prefix: pair "a" → reader built as "h".
  readFrames(
    stream,
    (f) => got.push(f),
    (e) => errors.push(e),
    { side: receiver },
  );
  for (const [i, t] of tensors.entries()) writeFrame(stream, encodeFrame({ id: i + 1 }, t), sender);
  return { got, errors, streamed: () => streamed };
}

describe("side payloads", () => {
  it("a large payload crosses as a file: the stream carries a few hundred bytes, the tensor arrives intact, the file is gone", async () => {
    const t = { x: big(1_000_000), small: { type: "int64", dims: [1], data: BigInt64Array.from([7n]) } as RawTensor };
    const r = roundTrip([t, { x: big(600_000, 3) }]);
    await new Promise((res) => setImmediate(res));
    expect(r.errors).toEqual([]);
    expect(r.got).toHaveLength(2);
    expect(r.streamed()).toBeLessThan(1000);
    const out = decodeTensors((r.got[0]!.header as { tensors: TensorEntry[] }).tensors, r.got[0]!.payload);
    const bytesOf = (d: RawTensor["data"]) =>
      Buffer.from((d as Float32Array).buffer, (d as Float32Array).byteOffset, (d as Float32Array).byteLength);
    expect(bytesOf(out.x!.data).equals(bytesOf(t.x.data))).toBe(true);
    expect(Array.from(out.small!.data as BigInt64Array)).toEqual([7n]);
    const second = decodeTensors((r.got[1]!.header as { tensors: TensorEntry[] }).tensors, r.got[1]!.payload);
    expect((second.x!.data as Float32Array)[599_999]).toBe(Math.fround(((599_999 * 3) % 1000) / 7));
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a payload under the threshold stays on the stream and writes no file", async () => {
    const n = Math.floor(SIDE_PAYLOAD_MIN_BYTES / 4) - 64;
    const r = roundTrip([{ x: big(n) }]);
    await new Promise((res) => setImmediate(res));
    expect(r.got).toHaveLength(1);
    expect(r.streamed()).toBeGreaterThan(n * 4);
  });

  it("when the file cannot be written (directory gone), the payload goes on the stream instead", async () => {
    const sender = sidePayloadsIn(path.join(dir, "missing"), "a");
    const r = roundTrip([{ x: big(400_000) }, { x: big(400_000, 5) }], sender);
    await new Promise((res) => setImmediate(res));
    expect(r.errors).toEqual([]);
    expect(r.got).toHaveLength(2);
    expect(r.streamed()).toBeGreaterThan(2 * 1_600_000);
  });

  const sideFrame = (seq: number) => {
    const [head] = encodeFrame({ id: 1 }, { x: big(300_000) });
    const h = Buffer.from(head!);
    h.writeUInt32LE(SIDE_FRAME_MAGIC, 0);
    const s = Buffer.alloc(8);
    s.writeUInt32LE(seq, 0);
    return Buffer.concat([h, s]);
  };

  it.each([
    ["a missing file", (): SidePayloads | null => sidePayloadsIn(dir, "h"), 1, /side payload 1 is missing/],
    ["a number out of order", (): SidePayloads | null => sidePayloadsIn(dir, "h"), 2, /out of order \(expected 1\)/],
    ["a channel without side payloads", (): SidePayloads | null => null, 1, /without side payloads/],
  ] as const)("a side frame naming %s is a bad frame, never a crash", (_what, side, seq, message) => {
    const reader = new FrameReader(undefined, undefined, side());
    expect(() => reader.push(sideFrame(seq))).toThrow(message);
    // Like every bad frame, it stops the reader for good.
    expect(() => reader.push(Buffer.alloc(1))).toThrow(message);
  });

  it.each([
    ["shorter", 100],
    ["longer", 1_200_000 + 8],
  ])("a side file %s than announced is a bad frame", (_what, bytes) => {
    writeFileSync(path.join(dir, "a1"), Buffer.alloc(bytes));
    const reader = new FrameReader(undefined, undefined, sidePayloadsIn(dir, "h"));
    expect(() => reader.push(sideFrame(1))).toThrow(/side payload 1 (has|is longer)/);
  });

  it("a side frame split across chunks (one byte at a time) still arrives whole", () => {
    const sender = sidePayloadsIn(dir, "a");
    const bufs = encodeFrame({ id: 9 }, { x: big(300_000, 7) });
    const stream = new PassThrough();
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    writeFrame(stream, bufs, sender);
    const bytes = Buffer.concat(chunks);
    const reader = new FrameReader(undefined, undefined, sidePayloadsIn(dir, "h"));
    const frames: Frame[] = [];
    for (let i = 0; i < bytes.length; i++) frames.push(...reader.push(bytes.subarray(i, i + 1)));
    expect(frames).toHaveLength(1);
    const x = decodeTensors((frames[0]!.header as { tensors: TensorEntry[] }).tensors, frames[0]!.payload).x!;
    expect((x.data as Float32Array)[299_999]).toBe(Math.fround(((299_999 * 7) % 1000) / 7));
  });
});

describe("side directories", () => {
  it("are private (0700), and the first one removes directories of agents that are gone, keeping live ones", () => {
    const root = path.join(dir, "shm");
    mkdirSync(root);
    // A pid that certainly is not running: a child that has exited.
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout.toString();
    mkdirSync(path.join(root, `edgefleet-host-${dead}-abc`));
    writeFileSync(path.join(root, `edgefleet-host-${dead}-abc`, "a1"), "stale");
    mkdirSync(path.join(root, `edgefleet-host-${process.ppid}-live`));
    mkdirSync(path.join(root, "someone-elses"));
    const made = createSideDir(root);
    expect(made).not.toBeNull();
    const names = readdirSync(root).sort();
    expect(names).toEqual([path.basename(made!), `edgefleet-host-${process.ppid}-live`, "someone-elses"].sort());
  });

  it("without a usable root there is no side directory (everything goes on the stream)", () => {
    expect(createSideDir(path.join(dir, "no-such-root"))).toBeNull();
  });
});

import { EdgeFleetError } from "../../shared/errors.js";
import type { Datatype } from "../../shared/schemas/common.js";
import {
  datatypeOf,
  elementCount,
  type OrtTensorType,
  type RawTensor,
  type TensorData,
  typedArrayOver,
} from "../../shared/tensors.js";
import type { TensorEntry } from "./host-headers.js";
import type { SidePayloads } from "./host-side-payloads.js";

/**
 * Frames of the agent ↔ model host bulk channel (architecture.md §11 "Agent ↔ host data path", issue 13).
 * Pure: bytes in, frames out, and back.
 *
 *   frame   = prefix (16 bytes) · header (JSON, UTF-8) · payload (raw bytes)
 *   prefix  = magic "EFH1" · u32 LE header length · u64 LE payload length
 *   payload = each tensor's bytes at the offset its header entry names, every offset a multiple of 8
 *
 * Tensor bytes are never JSON and never structured-cloned: the sender writes views of the tensors'
 * own memory (one `writev`, nothing concatenated), the receiver copies each chunk once into a buffer
 * of the announced size and hands out typed-array views over it. A frame that breaks these rules is
 * an EdgeFleetError with a message saying which rule, never a crash; after it the stream cannot be
 * resynchronised, so the reader refuses further input.
 *
 *   side frame = prefix (magic "EFH2") · header · u64 LE sequence number
 * carries no payload bytes on the stream: the payload (same length and layout) is the sender's side
 * payload file of that number (host-side-payloads.ts), for payloads too large for the socket to move
 * cheaply.
 */
export const FRAME_MAGIC = 0x31484645; // "EFH1" little-endian
export const SIDE_FRAME_MAGIC = 0x32484645; // "EFH2" little-endian
export const PREFIX_BYTES = 16;
const ALIGN = 8;

export interface FrameLimits {
  /** Largest header accepted (bytes). */
  maxHeaderBytes: number;
  /** Largest payload accepted (bytes); a larger announcement is refused before any allocation. */
  maxPayloadBytes: number;
}

/** 1 MiB of header is thousands of tensors; 4 GiB of payload is beyond any model we run on a device. */
export const DEFAULT_FRAME_LIMITS: FrameLimits = { maxHeaderBytes: 1 << 20, maxPayloadBytes: 2 ** 32 };

export interface Frame {
  /** Parsed JSON header (validated by the caller's schema). */
  header: unknown;
  /** The payload, at an 8-aligned offset of its ArrayBuffer, so aligned typed views can be made over it. */
  payload: Buffer;
}

const WIDTH: Record<Exclude<OrtTensorType, "string">, number> = {
  bool: 1,
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  float16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  uint64: 8,
  int64: 8,
  float64: 8,
};

const frameError = (msg: string) => new EdgeFleetError("INTERNAL", `model host channel: ${msg}`);

/** BYTES/string tensors: each element as u32 LE length + UTF-8 (the one per-element encoding left). */
function stringBytes(data: readonly string[]): Buffer {
  const parts = data.map((s) => Buffer.from(s, "utf8"));
  const out = Buffer.allocUnsafe(parts.reduce((n, p) => n + 4 + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.writeUInt32LE(p.length, at);
    p.copy(out, at + 4);
    at += 4 + p.length;
  }
  return out;
}

function tensorBytes(t: RawTensor): Buffer {
  if (Array.isArray(t.data)) return stringBytes(t.data);
  const d = t.data as Exclude<TensorData, string[]>;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

const ZEROS = Buffer.alloc(ALIGN);
const EMPTY = Buffer.alloc(0);

/**
 * A payload buffer at an 8-aligned offset. Small ones come from Node's shared pool (whose slices
 * start at multiples of 8; checked, since that is Node's detail rather than its contract), large
 * ones get their own ArrayBuffer.
 */
function defaultAllocate(bytes: number): Buffer {
  if (bytes < 4096) {
    const b = Buffer.allocUnsafe(bytes);
    if (b.byteOffset % ALIGN === 0) return b;
  }
  return Buffer.allocUnsafeSlow(bytes);
}

/** At most this many bytes, a frame is encoded into one buffer (header and tensors copied in). */
export const SMALL_FRAME_BYTES = 64 * 1024;

/**
 * One tensor entry as JSON text, built directly: the same text `JSON.stringify` gives for the entry
 * object (names are escaped by it; types come from a fixed set of plain words; dims and offsets are
 * safe integers), without building and walking the objects (issue 13: per-request cost of small frames).
 */
function entryJson(e: TensorEntry): string {
  return `{"name":${JSON.stringify(e.name)},"type":"${e.type}","dims":[${e.dims.join(",")}],"offset":${e.offset},"byteLength":${e.byteLength}}`;
}

/** `JSON.stringify({ ...header, tensors: entries })`, with the entries written by `entryJson`. */
function headerJson(header: Record<string, unknown>, entries: readonly TensorEntry[]): string {
  if (Object.hasOwn(header, "tensors")) return JSON.stringify({ ...header, tensors: entries });
  const head = JSON.stringify(header);
  const list = `"tensors":[${entries.map(entryJson).join(",")}]}`;
  return head.length === 2 ? `{${list}` : `${head.slice(0, -1)},${list}`;
}

/**
 * Encodes one frame as the list of buffers to write (prefix + header first, then the tensors' own
 * memory, with padding to 8-byte offsets). `header` gets a `tensors` entry listing them. A frame of
 * at most SMALL_FRAME_BYTES comes back as one buffer with the tensor bytes copied in: one allocation
 * and one write instead of a list, a concatenation and its own allocation (the small-model path).
 */
export function encodeFrame(header: Record<string, unknown>, tensors: Record<string, RawTensor> = {}): Buffer[] {
  const entries: TensorEntry[] = [];
  const body: Buffer[] = [];
  let offset = 0;
  for (const name in tensors) {
    const t = tensors[name]!;
    const bytes = tensorBytes(t);
    offset += (ALIGN - (offset % ALIGN)) % ALIGN;
    entries.push({ name, type: t.type, dims: t.dims.slice(), offset, byteLength: bytes.length });
    body.push(bytes);
    offset += bytes.length;
  }
  const json = headerJson(header, entries);
  const jsonBytes = Buffer.byteLength(json, "utf8");
  const small = PREFIX_BYTES + jsonBytes + offset <= SMALL_FRAME_BYTES;
  const head = Buffer.allocUnsafe(PREFIX_BYTES + jsonBytes + (small ? offset : 0));
  head.writeUInt32LE(FRAME_MAGIC, 0);
  head.writeUInt32LE(jsonBytes, 4);
  head.writeUInt32LE(offset % 2 ** 32, 8);
  head.writeUInt32LE(Math.floor(offset / 2 ** 32), 12);
  head.write(json, PREFIX_BYTES, "utf8");
  const start = PREFIX_BYTES + jsonBytes;
  if (small) {
    // Padding is zeroed so a frame's bytes are a function of its content (allocUnsafe memory is not).
    let at = 0;
    for (let i = 0; i < body.length; i++) {
      const e = entries[i]!;
      if (e.offset > at) head.fill(0, start + at, start + e.offset);
      body[i]!.copy(head, start + e.offset);
      at = e.offset + e.byteLength;
    }
    return [head];
  }
  const out: Buffer[] = [head];
  let at = 0;
  for (let i = 0; i < body.length; i++) {
    const e = entries[i]!;
    if (e.offset > at) out.push(ZEROS.subarray(0, e.offset - at));
    if (e.byteLength > 0) out.push(body[i]!);
    at = e.offset + e.byteLength;
  }
  return out;
}

/** One constructor per datatype lives in shared/tensors.ts; this maps the frame's ORT type name onto it. */
function typedView(type: Exclude<OrtTensorType, "string">, buf: ArrayBuffer, at: number, count: number): TensorData {
  return typedArrayOver(datatypeOf(type) as Exclude<Datatype, "BYTES">, buf, at, count);
}

function decodeStrings(name: string, bytes: Buffer, count: number): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 4 > bytes.length) throw frameError(`tensor "${name}": truncated string length`);
    const len = bytes.readUInt32LE(at);
    if (at + 4 + len > bytes.length) throw frameError(`tensor "${name}": truncated string`);
    out.push(bytes.toString("utf8", at + 4, at + 4 + len));
    at += 4 + len;
  }
  if (out.length !== count) throw frameError(`tensor "${name}": ${out.length} strings for ${count} elements`);
  return out;
}

/**
 * The tensors a frame's header lists, as typed-array views over its payload (no copy). Checks every
 * entry against the payload: in bounds, aligned, size matching type × shape, no name twice.
 */
export function decodeTensors(entries: readonly TensorEntry[], payload: Buffer): Record<string, RawTensor> {
  const out: Record<string, RawTensor> = {};
  for (const e of entries) {
    if (Object.hasOwn(out, e.name)) throw frameError(`tensor "${e.name}" listed twice`);
    if (e.offset + e.byteLength > payload.length) {
      throw frameError(
        `tensor "${e.name}" (${e.offset}+${e.byteLength}) is outside the ${payload.length}-byte payload`,
      );
    }
    const count = elementCount(e.dims);
    const bytes = payload.subarray(e.offset, e.offset + e.byteLength);
    if (e.type === "string") {
      out[e.name] = { type: e.type, dims: e.dims, data: decodeStrings(e.name, bytes, count) };
      continue;
    }
    const width = WIDTH[e.type];
    if (e.byteLength !== count * width) {
      throw frameError(`tensor "${e.name}": ${e.byteLength} bytes for ${e.type} [${e.dims.join(",")}]`);
    }
    const at = payload.byteOffset + e.offset;
    if (at % width !== 0) throw frameError(`tensor "${e.name}": offset ${e.offset} not aligned for ${e.type}`);
    out[e.name] = { type: e.type, dims: e.dims, data: typedView(e.type, payload.buffer as ArrayBuffer, at, count) };
  }
  return out;
}

/**
 * Incremental frame reader: feed it chunks as they arrive (any split, even one byte at a time);
 * it returns the frames completed by each chunk. Each payload byte is copied once, into a buffer
 * allocated at the announced size — no concatenation of chunks. Throws on the first bad frame and
 * on every call after it.
 */
export class FrameReader {
  private readonly prefix = Buffer.alloc(PREFIX_BYTES);
  private prefixHave = 0;
  /** Set only when the header is split across chunks (else it is parsed in place). */
  private header: Buffer | null = null;
  private headerLength = 0;
  private headerHave = 0;
  private parsedHeader: unknown = null;
  private payload: Buffer | null = null;
  private payloadHave = 0;
  /** A side frame: after the header come 8 bytes of sequence number, not the payload. */
  private isSide = false;
  private readonly seq = Buffer.alloc(8);
  private seqHave = 0;
  private failed: EdgeFleetError | null = null;

  /**
   * `allocate(bytes)`: where a payload goes; must return a Buffer of exactly `bytes` at an 8-aligned
   * offset of its ArrayBuffer. Default: a fresh buffer of its own. A receiver that knows when a payload
   * is no longer used may hand out a recycled one (fresh memory costs page faults: ~2.5 ms for 4.9 MB
   * on the benchmark machine, more than copying it).
   */
  constructor(
    private readonly limits: FrameLimits = DEFAULT_FRAME_LIMITS,
    private readonly allocate: (bytes: number) => Buffer = defaultAllocate,
    /** Where side frames' payloads are; without it a side frame is a bad frame. */
    private readonly side: SidePayloads | null = null,
  ) {}

  /** True while a frame has been started but not finished (bytes lost if the stream ends now). */
  get midFrame(): boolean {
    return this.prefixHave > 0;
  }

  push(chunk: Buffer): Frame[] {
    if (this.failed) throw this.failed;
    try {
      return this.consume(chunk);
    } catch (err) {
      this.failed = err instanceof EdgeFleetError ? err : frameError(String(err));
      throw this.failed;
    }
  }

  private consume(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    while (at < chunk.length) {
      // Fast path: a whole prefix and header in this chunk (a small frame arrives in one read).
      if (this.prefixHave === 0 && chunk.length - at >= PREFIX_BYTES) {
        const headerBytes = chunk.readUInt32LE(at + 4);
        if (chunk.length - at - PREFIX_BYTES >= headerBytes) {
          this.startFrame(chunk, at);
          this.prefixHave = PREFIX_BYTES;
          this.headerHave = headerBytes;
          this.parsedHeader = parseHeader(chunk, at + PREFIX_BYTES, at + PREFIX_BYTES + headerBytes);
          at += PREFIX_BYTES + headerBytes;
        }
      }
      if (this.prefixHave < PREFIX_BYTES) {
        const n = Math.min(PREFIX_BYTES - this.prefixHave, chunk.length - at);
        chunk.copy(this.prefix, this.prefixHave, at, at + n);
        this.prefixHave += n;
        at += n;
        if (this.prefixHave === PREFIX_BYTES) {
          this.startFrame(this.prefix, 0);
          this.header = Buffer.allocUnsafe(this.headerLength);
        } else continue;
      }
      if (this.headerHave < this.headerLength) {
        const header = this.header!;
        const n = Math.min(header.length - this.headerHave, chunk.length - at);
        chunk.copy(header, this.headerHave, at, at + n);
        this.headerHave += n;
        at += n;
        if (this.headerHave < header.length) continue;
        this.parsedHeader = parseHeader(header, 0, header.length);
      }
      const payload = this.payload!;
      if (this.isSide) {
        const k = Math.min(8 - this.seqHave, chunk.length - at);
        chunk.copy(this.seq, this.seqHave, at, at + k);
        this.seqHave += k;
        at += k;
        if (this.seqHave < 8) continue;
        const seq = this.seq.readUInt32LE(0) + this.seq.readUInt32LE(4) * 2 ** 32;
        this.side!.take(seq, payload);
        frames.push({ header: this.parsedHeader, payload });
        this.reset();
        continue;
      }
      const n = Math.min(payload.length - this.payloadHave, chunk.length - at);
      if (n > 0) {
        chunk.copy(payload, this.payloadHave, at, at + n);
        this.payloadHave += n;
        at += n;
      }
      if (this.payloadHave === payload.length) {
        frames.push({ header: this.parsedHeader, payload });
        this.reset();
      }
    }
    return frames;
  }

  /** Checks the prefix at `buf[at..at+16)` and allocates the payload. */
  private startFrame(buf: Buffer, at: number): void {
    const magic = buf.readUInt32LE(at);
    if (magic !== FRAME_MAGIC && magic !== SIDE_FRAME_MAGIC)
      throw frameError(`bad frame magic 0x${magic.toString(16).padStart(8, "0")}`);
    this.isSide = magic === SIDE_FRAME_MAGIC;
    if (this.isSide && !this.side) throw frameError("a side-payload frame on a channel without side payloads");
    this.seqHave = 0;
    const headerBytes = buf.readUInt32LE(at + 4);
    const payloadBytes = buf.readUInt32LE(at + 8) + buf.readUInt32LE(at + 12) * 2 ** 32;
    if (headerBytes === 0 || headerBytes > this.limits.maxHeaderBytes) {
      throw frameError(`frame header of ${headerBytes} bytes (limit ${this.limits.maxHeaderBytes})`);
    }
    if (payloadBytes > this.limits.maxPayloadBytes) {
      throw frameError(`frame payload of ${payloadBytes} bytes (limit ${this.limits.maxPayloadBytes})`);
    }
    this.headerLength = headerBytes;
    this.headerHave = 0;
    this.payload = payloadBytes === 0 ? EMPTY : this.allocate(payloadBytes);
    if (this.payload.length !== payloadBytes || this.payload.byteOffset % ALIGN !== 0) {
      throw frameError("payload allocator returned a buffer of the wrong size or alignment");
    }
    this.payloadHave = 0;
  }

  private reset(): void {
    this.prefixHave = 0;
    this.header = null;
    this.headerLength = 0;
    this.headerHave = 0;
    this.parsedHeader = null;
    this.payload = null;
    this.payloadHave = 0;
  }
}

function parseHeader(bytes: Buffer, start: number, end: number): unknown {
  try {
    return JSON.parse(bytes.toString("utf8", start, end));
  } catch {
    throw frameError("frame header is not valid JSON");
  }
}

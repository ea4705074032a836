/**
 * Minimal protobuf reader for ONNX `ModelProto.opset_import` (field 8, OperatorSetIdProto:
 * domain = 1 string, version = 2 int64). Only top-level fields are walked and the large graph
 * (field 7) is skipped by its length, so this is cheap even for big models. Returns the opset of
 * the default domain ("" or "ai.onnx"), or null when the bytes are not a readable ModelProto.
 */
export function readDefaultOpset(bytes: Uint8Array): number | null {
  try {
    const r = new Reader(bytes, 0, bytes.length);
    let opset: number | null = null;
    while (!r.done()) {
      const { field, wire } = r.tag();
      if (field === 8 && wire === 2) {
        const len = r.varint();
        const sub = new Reader(bytes, r.pos, r.pos + len);
        r.pos += len;
        let domain = "";
        let version: number | null = null;
        while (!sub.done()) {
          const t = sub.tag();
          if (t.field === 1 && t.wire === 2) domain = sub.string();
          else if (t.field === 2 && t.wire === 0) version = sub.varint();
          else sub.skip(t.wire);
        }
        if ((domain === "" || domain === "ai.onnx") && version !== null) opset = version;
      } else {
        r.skip(wire);
      }
    }
    return opset;
  } catch {
    return null;
  }
}

class Reader {
  constructor(
    private readonly buf: Uint8Array,
    public pos: number,
    private readonly end: number,
  ) {}
  done(): boolean {
    return this.pos >= this.end;
  }
  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    throw new Error("varint too long");
  }
  tag(): { field: number; wire: number } {
    const v = this.varint();
    return { field: Math.floor(v / 8), wire: v & 7 };
  }
  string(): string {
    const len = this.varint();
    if (this.pos + len > this.end) throw new Error("truncated string");
    const s = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.pos, len).toString("utf8");
    this.pos += len;
    return s;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 5) this.pos += 4;
    else if (wire === 2) {
      // Read the length first: `this.pos += this.varint()` would add to the pre-varint position.
      const len = this.varint();
      this.pos += len;
    } else throw new Error(`unsupported wire type ${wire}`);
    if (this.pos > this.end) throw new Error("truncated field");
  }
}

import { binIndex } from "../../shared/drift/drift-stats.js";
import type { BaselineFeature } from "../../shared/schemas/baseline.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";

/**
 * A rolling window of the last `capacity` samples of one feature, kept as bin indices so its
 * histogram is O(1) to update: adding a sample when full first removes the oldest one.
 * Pure data structure; no I/O, no timers.
 */
export class RollingHistogram {
  readonly counts: number[];
  private readonly ring: Uint16Array;
  private next = 0;
  private size = 0;
  /** Samples added since the last `markReported()`. */
  fresh = 0;

  constructor(
    private readonly edges: readonly number[],
    readonly capacity: number,
  ) {
    this.counts = new Array<number>(edges.length - 1).fill(0);
    this.ring = new Uint16Array(capacity);
  }

  add(x: number): void {
    const bin = binIndex(this.edges, x);
    if (bin < 0) return;
    if (this.size === this.capacity) this.counts[this.ring[this.next]!]! -= 1;
    else this.size += 1;
    this.ring[this.next] = bin;
    this.counts[bin]! += 1;
    this.next = (this.next + 1) % this.capacity;
    this.fresh += 1;
  }

  get n(): number {
    return this.size;
  }

  markReported(): void {
    this.fresh = 0;
  }
}

function numbers(t: JsonTensor): number[] {
  return (t.data as unknown[]).map((v) => (typeof v === "boolean" ? (v ? 1 : 0) : Number(v)));
}

/** The samples one inference contributes to a feature (see `reduce` in shared/schemas/baseline.ts). */
export function featureSamples(feature: BaselineFeature, tensor: JsonTensor | undefined): number[] {
  if (!tensor || tensor.data.length === 0) return [];
  const xs = numbers(tensor).filter((x) => Number.isFinite(x));
  if (xs.length === 0) return [];
  switch (feature.reduce) {
    case "values":
      return xs;
    case "mean":
      return [xs.reduce((a, b) => a + b, 0) / xs.length];
    case "rms":
      return [Math.sqrt(xs.reduce((a, b) => a + b * b, 0) / xs.length)];
    case "min":
      return [Math.min(...xs)];
    case "max":
      return [Math.max(...xs)];
    case "argmax": {
      let best = 0;
      for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
      return [best];
    }
  }
}

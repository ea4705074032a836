import { createRequire } from "node:module";

/** One metric family as parse-prometheus-text-format returns it. */
export interface PromFamily {
  name: string;
  help: string;
  type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
  metrics: {
    value?: string;
    labels?: Record<string, string>;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }[];
}

/** Parses Prometheus text exposition with a real third-party parser (the package ships no types). */
export function parsePrometheus(text: string): PromFamily[] {
  const require = createRequire(import.meta.url);
  const parse = require("parse-prometheus-text-format") as (t: string) => PromFamily[];
  return parse(text);
}

/** Sum of a family's sample values whose labels include `labels`. */
export function promValue(
  families: PromFamily[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const fam = families.find((f) => f.name === name);
  if (!fam) return undefined;
  const hits = fam.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  if (hits.length === 0) return undefined;
  // Histograms: this parser keeps only the buckets; the +Inf bucket is the count.
  return hits.reduce((a, m) => a + Number(m.value ?? m.buckets?.["+Inf"] ?? 0), 0);
}

import type { VersionView } from "../../shared/http/models.js";

/**
 * `fleetctl models show` / `models diff` (issue 21): a version as flat `field → value` pairs, and
 * what changed between two versions: lineage, inputs and outputs, opset and compatibility, bundle
 * sizes and the int8 validation figures. Pure.
 */
export interface FieldChange {
  field: string;
  /** JSON text of the value in A / B; null when the field is absent there. */
  a: string | null;
  b: string | null;
}

/** Nested objects as dotted keys, leaves as JSON text (arrays are leaves). */
function flatten(value: unknown, prefix: string, out: Map<string, string>): void {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>))
      flatten(v, prefix ? `${prefix}.${k}` : k, out);
    return;
  }
  if (value !== undefined) out.set(prefix, JSON.stringify(value));
}

/** The fields of a version that `diff` compares, flattened. */
export function versionFields(v: VersionView): Map<string, string> {
  const out = new Map<string, string>();
  flatten(v.lineage, "lineage", out);
  const m = v.manifest?.signed;
  if (m) {
    for (const t of m.inputs) out.set(`input.${t.name}`, `${t.datatype} ${JSON.stringify(t.shape)}`);
    for (const t of m.outputs) out.set(`output.${t.name}`, `${t.datatype} ${JSON.stringify(t.shape)}`);
    out.set("opset", String(m.opset));
    flatten(m.compatibility, "compatibility", out);
  }
  out.set("upload", v.upload);
  for (const x of v.variants) {
    const p = `variant.${x.variant}`;
    out.set(`${p}.bundleBytes`, x.bundle ? String(x.bundle.size) : "null");
    out.set(`${p}.published`, String(x.published));
    const val = x.validation;
    if (val) {
      out.set(`${p}.validation.passed`, String(val.passed));
      out.set(`${p}.validation.top1Agreement`, JSON.stringify(val.top1Agreement));
      out.set(`${p}.validation.sizeRatio`, String(Math.round(val.sizeRatio * 1000) / 1000));
      out.set(`${p}.validation.latencyRatio`, String(Math.round(val.latency.ratio * 100) / 100));
    }
  }
  return out;
}

/** Every field whose value differs between A and B (added and removed ones too), in field order. */
export function diffVersions(a: VersionView, b: VersionView): FieldChange[] {
  const fa = versionFields(a);
  const fb = versionFields(b);
  const fields = [...new Set([...fa.keys(), ...fb.keys()])].sort();
  return fields
    .filter((f) => fa.get(f) !== fb.get(f))
    .map((f) => ({ field: f, a: fa.get(f) ?? null, b: fb.get(f) ?? null }));
}

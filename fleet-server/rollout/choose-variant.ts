import type { Variant } from "../../shared/schemas/common.js";
import type { DeviceProfile } from "../../shared/schemas/device-profile.js";
import { isVariantPublished } from "../registry/model-service.js";
import type { BundleRow } from "../store/model-repo.js";

/**
 * Which bundle variant a device gets when a rollout leaves `variant` out (issue 5, architecture.md §5/§6).
 * Pure: the executor gathers the version's variants, the device's profile and what the device
 * measured, and applies the answer.
 */

/** One variant of the version being rolled out, as far as the choice is concerned. */
export interface VariantCandidate {
  variant: Variant;
  /** False for an int8 variant that failed its accuracy policy: never shipped. */
  published: boolean;
  /** The manifest's `compatibility.minMemoryMB`. */
  minMemoryMB: number;
  /** Size of `model.onnx` in the bundle: the session holds at least the weights in memory. */
  modelBytes: number;
  /**
   * int8 / fp32 median latency measured on the fleet server's own CPU when the variant was built
   * (the signed report's `validation.latency.ratio`); null/absent for fp32 or when unknown.
   */
  serverLatencyRatio?: number | null;
}

/** What one device measured for one variant of the model (recorded from probation reports). */
export interface VariantMeasurement {
  variant: Variant;
  p50Ms: number | null;
  requests: number;
}

export type VariantProfile = Pick<DeviceProfile, "id" | "preferredVariants" | "memoryBudgetMB"> & {
  /** The profile's CPU architectures: the server's own timing speaks for this class when they include its arch. */
  match?: { arch?: string[] };
};

export type VariantChoiceReason =
  /** First variant of the profile's `preferredVariants` that is published and fits. */
  | "profile"
  /** Both variants were measured on this device with enough requests; this one was faster. */
  | "measured-faster"
  /** No preferred variant is published and fits: fp32, the variant every version has. */
  | "fallback"
  /** The device has no profile, or one the server does not know: fp32. */
  | "unknown-profile"
  /**
   * The profile's first choice was slower than fp32 on the server's CPU, which is of this
   * device's class (same arch), and the device has not measured both itself: the next one.
   */
  | "server-measured-slower";

export interface VariantChoice {
  variant: Variant;
  reason: VariantChoiceReason;
}

/**
 * Requests each of two variants must have been measured with on a device before their p50s are
 * compared. A probation p50 over a handful of requests is mostly warm-up noise; 50 is enough for
 * a median to be stable on an idle edge CPU and is reached by a typical probation window.
 */
export const MIN_MEASURED_REQUESTS = 50;

const MIB = 1024 * 1024;

/** A variant the device may run: published, and within the profile's memory budget. */
export function variantFits(c: VariantCandidate, profile: VariantProfile): boolean {
  return c.published && c.minMemoryMB <= profile.memoryBudgetMB && c.modelBytes <= profile.memoryBudgetMB * MIB;
}

/**
 * The variant for one device:
 * 1. unknown profile → fp32;
 * 2. among the profile's `preferredVariants` that are published and fit its `memoryBudgetMB`
 *    (manifest `minMemoryMB` and model size), the one this device measured faster (lower p50),
 *    when at least two of them were measured there with `minRequests` requests each — what the
 *    device saw beats what the profile guessed for its class;
 * 3. else the first of them in the profile's order, skipping a quantized variant that was slower
 *    than fp32 on the fleet server's own CPU when the server is of the device's class
 *    (`serverArch` among the profile's `match.arch`; issue 17) — a slower variant is not the
 *    default there; the next preferred one, or fp32, is;
 * 4. else fp32.
 */
export function chooseVariant(
  variants: readonly VariantCandidate[],
  profile: VariantProfile | null,
  measured: readonly VariantMeasurement[],
  minRequests = MIN_MEASURED_REQUESTS,
  serverArch: string = process.arch,
): VariantChoice {
  if (profile === null) return { variant: "fp32", reason: "unknown-profile" };
  const eligible = profile.preferredVariants
    .map((v) => variants.find((c) => c.variant === v))
    .filter((c): c is VariantCandidate => c !== undefined && variantFits(c, profile));
  if (eligible.length === 0) return { variant: "fp32", reason: "fallback" };

  const timed = eligible
    .map((c) => ({ variant: c.variant, p50: measuredP50(measured, c.variant, minRequests) }))
    .filter((t): t is { variant: Variant; p50: number } => t.p50 !== null);
  if (timed.length >= 2) {
    // Stable sort keeps the profile's order on equal p50s: a tie is no reason to switch.
    const fastest = [...timed].sort((a, b) => a.p50 - b.p50)[0]!;
    if (fastest.variant !== eligible[0]!.variant) return { variant: fastest.variant, reason: "measured-faster" };
    return { variant: eligible[0]!.variant, reason: "profile" };
  }
  if (slowerOnServer(eligible[0]!, profile, serverArch)) {
    const next = eligible.find((c) => !slowerOnServer(c, profile, serverArch));
    const fp32 = variants.find((c) => c.variant === "fp32" && variantFits(c, profile));
    const pick = next ?? fp32;
    if (pick) return { variant: pick.variant, reason: "server-measured-slower" };
  }
  return { variant: eligible[0]!.variant, reason: "profile" };
}

/** A quantized variant the server timed slower than fp32, on a CPU of this profile's class. Pure. */
export function slowerOnServer(c: VariantCandidate, profile: VariantProfile, serverArch: string): boolean {
  const sameClass = profile.match?.arch?.includes(serverArch) ?? false;
  return c.variant !== "fp32" && sameClass && (c.serverLatencyRatio ?? 0) > 1;
}

/**
 * Why a device did not get the variants its profile prefers to `chosen`, for the rollout view
 * (issue 20 §7: "say why a device got fp32 when its profile prefers int8"). Null when `chosen` is the
 * profile's first choice. Pure.
 */
export function whyNotPreferred(
  variants: readonly VariantCandidate[],
  profile: VariantProfile | null,
  chosen: Variant,
  serverArch: string = process.arch,
): string | null {
  if (profile === null) return "the device's profile is unknown to the server: fp32";
  const notes: string[] = [];
  for (const v of profile.preferredVariants) {
    if (v === chosen) break;
    const c = variants.find((x) => x.variant === v);
    if (!c) notes.push(`${v} not built for this version`);
    else if (!c.published) notes.push(`${v} not published: failed validation`);
    else if (c.minMemoryMB > profile.memoryBudgetMB)
      notes.push(`${v} needs ${c.minMemoryMB} MB > profile budget ${profile.memoryBudgetMB} MB`);
    else if (c.modelBytes > profile.memoryBudgetMB * MIB)
      notes.push(`${v} model ${Math.ceil(c.modelBytes / MIB)} MB > profile budget ${profile.memoryBudgetMB} MB`);
    else if (slowerOnServer(c, profile, serverArch))
      notes.push(`${v} ran x${c.serverLatencyRatio} of fp32's time on the server's CPU (${serverArch}, this class)`);
    else notes.push(`${v} measured slower on this device`);
  }
  return notes.length > 0 ? notes.join("; ") : null;
}

function measuredP50(measured: readonly VariantMeasurement[], variant: Variant, minRequests: number): number | null {
  const m = measured.find((x) => x.variant === variant);
  return m && m.p50Ms !== null && m.requests >= minRequests ? m.p50Ms : null;
}

/** The registry's bundles of one version as candidates (pure: reads the signed manifests). */
export function candidatesOf(bundles: readonly BundleRow[]): VariantCandidate[] {
  return bundles.map((b) => {
    const m = b.manifest.signed;
    return {
      variant: b.variant as Variant,
      published: isVariantPublished(b),
      minMemoryMB: m.compatibility.minMemoryMB,
      modelBytes: m.files.find((f) => f.path === "model.onnx")?.size ?? 0,
      serverLatencyRatio: m.quantization?.validation.latency.ratio ?? null,
    };
  });
}

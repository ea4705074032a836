import semver from "semver";
import { z } from "zod";
import { EdgeFleetError, type ErrorJson } from "../../shared/errors.js";
import { type DesiredState, DesiredStateSchema } from "../../shared/schemas/desired-state.js";
import { type Manifest, ManifestSchema } from "../../shared/schemas/manifest.js";
import { type Envelope, type Root, SignatureSchema } from "../../shared/schemas/trust.js";
import { verifyRoleSignatures } from "../../shared/trust/envelope.js";

/** Device facts the compatibility check needs (architecture.md §2 manifest `compatibility`). */
export interface DeviceFacts {
  arch: string;
  memoryBudgetMB: number;
  /** This agent's own version (semver). */
  agentVersion: string;
  /** Execution providers the device profile configures (onnxruntime names, e.g. "cpu"). */
  executionProviders: readonly string[];
}

/**
 * Memory a model host needs beyond its weights: node + onnxruntime + IPC, measured at ~45-60 MB RSS
 * for a host with a tiny model on x64 and arm64 (docs/operations.md).
 */
export const HOST_OVERHEAD_MB = 64;
/** Weights are held once by the session and once more while the graph is optimized at load time. */
export const WEIGHT_FACTOR = 2;

export interface VerifyContext {
  root: Root;
  deviceId: string;
  /** Last accepted `seq`; 0 when none was ever accepted. */
  lastSeq: number;
  /** Epoch ms. */
  now: number;
  /** Highest release counter installed (committed) per model. */
  highestCounters: ReadonlyMap<string, number>;
  /** SHA-256 of bundles marked bad (never retried, architecture.md §5). */
  badBundles: ReadonlySet<string>;
}

/**
 * A verified desired state. `raw` is the document exactly as signed: signatures and the bundle's
 * `manifest.json` comparison are over the raw JSON, because zod fills defaults and strips keys,
 * which would change the canonical bytes.
 */
export interface VerifiedDesired {
  desired: DesiredState;
  raw: Envelope<unknown>;
  /** Raw signed manifest envelope per assignment, same order as `desired.assignments`. */
  rawManifests: Envelope<unknown>[];
}

export type VerifyResult = { ok: true; value: VerifiedDesired } | { ok: false; error: ErrorJson; seq: number | null };

const RawEnvelopeSchema = z.object({ signed: z.unknown(), signatures: z.array(SignatureSchema).max(32) });

/**
 * Decides whether a desired-state document may be accepted (architecture.md §3). Pure: no clock, no I/O;
 * every rejection is a result with a stable error code, and the caller leaves its state unchanged.
 * Order matters: nothing in the document is trusted (not even its seq for replay bookkeeping)
 * before the director signatures check out.
 */
export function verifyDesiredState(input: unknown, ctx: VerifyContext): VerifyResult {
  try {
    return { ok: true, value: verifyOrThrow(input, ctx) };
  } catch (err) {
    const e = err instanceof EdgeFleetError ? err : new EdgeFleetError("VALIDATION_FAILED", String(err));
    const seq = seqOf(input);
    return { ok: false, error: e.toJSON(), seq };
  }
}

function seqOf(input: unknown): number | null {
  const s = (input as { signed?: { seq?: unknown } } | null)?.signed?.seq;
  return typeof s === "number" && Number.isInteger(s) ? s : null;
}

function verifyOrThrow(input: unknown, ctx: VerifyContext): VerifiedDesired {
  const env = RawEnvelopeSchema.safeParse(input);
  if (!env.success)
    throw new EdgeFleetError("VALIDATION_FAILED", `desired state envelope invalid: ${env.error.message}`);
  const raw = env.data as Envelope<unknown>;
  verifyRoleSignatures(raw, ctx.root, "director");
  // Freeze attack (TUF 5.3.10): an expired trusted root means we can no longer know which keys are
  // current, so nothing new is accepted until a fresh root arrives; the committed model keeps serving.
  if (Date.parse(ctx.root.expires) <= ctx.now) {
    throw new EdgeFleetError("EXPIRED", `trusted root v${ctx.root.version} expired at ${ctx.root.expires}`);
  }

  const parsed = DesiredStateSchema.safeParse(raw.signed);
  if (!parsed.success) throw new EdgeFleetError("VALIDATION_FAILED", `desired state invalid: ${parsed.error.message}`);
  const desired = parsed.data;

  if (desired.deviceId !== ctx.deviceId) {
    throw new EdgeFleetError("WRONG_DEVICE", `desired state is for ${desired.deviceId}, not ${ctx.deviceId}`);
  }
  if (desired.seq <= ctx.lastSeq) {
    throw new EdgeFleetError("SEQ_REPLAYED", `seq ${desired.seq} is not greater than accepted ${ctx.lastSeq}`, {
      details: {
        seq: desired.seq,
        lastSeq: ctx.lastSeq,
      },
    });
  }
  if (Date.parse(desired.expires) <= ctx.now) {
    throw new EdgeFleetError("EXPIRED", `desired state expired at ${desired.expires}`);
  }
  const models = new Set<string>();
  const rawAssignments = (raw.signed as { assignments: { manifest: unknown }[] }).assignments;
  const rawManifests = desired.assignments.map((a, i) => {
    // One active assignment per model, plus at most one side (shadow / A-B) candidate of another bundle.
    const slot = `${a.model}#${a.strategy.mode === "active" ? "active" : "side"}`;
    const twice =
      models.has(slot) ||
      desired.assignments.some((o, j) => j < i && o.model === a.model && o.bundle.sha256 === a.bundle.sha256);
    if (twice) throw new EdgeFleetError("VALIDATION_FAILED", `model ${a.model} assigned twice`);
    models.add(slot);
    const rawManifest = RawEnvelopeSchema.parse(rawAssignments[i]?.manifest) as Envelope<unknown>;
    verifyAssignment(a, rawManifest, ctx);
    return rawManifest;
  });
  return { desired, raw, rawManifests };
}

function verifyAssignment(a: DesiredState["assignments"][number], rawManifest: Envelope<unknown>, ctx: VerifyContext) {
  try {
    verifyRoleSignatures(rawManifest, ctx.root, "release");
  } catch (err) {
    if (err instanceof EdgeFleetError) {
      throw new EdgeFleetError(err.code, `manifest of ${a.model}: ${err.message}`, { details: err.details });
    }
    throw err;
  }
  const manifest: Manifest = ManifestSchema.parse(rawManifest.signed);
  if (manifest.model.name !== a.model) {
    throw new EdgeFleetError(
      "MANIFEST_MISMATCH",
      `assignment for ${a.model} carries a manifest of ${manifest.model.name}`,
    );
  }
  if (manifest.releaseCounter !== a.releaseCounter) {
    throw new EdgeFleetError(
      "MANIFEST_MISMATCH",
      `assignment release counter ${a.releaseCounter} differs from manifest's ${manifest.releaseCounter}`,
    );
  }
  const highest = ctx.highestCounters.get(a.model) ?? 0;
  if (a.releaseCounter < highest) {
    throw new EdgeFleetError(
      "RELEASE_COUNTER_ROLLBACK",
      `${a.model}: release counter ${a.releaseCounter} is lower than installed ${highest}`,
      { details: { model: a.model, releaseCounter: a.releaseCounter, highest } },
    );
  }
  if (ctx.badBundles.has(a.bundle.sha256)) {
    throw new EdgeFleetError("BUNDLE_MARKED_BAD", `${a.model}: bundle ${a.bundle.sha256} is marked bad on this device`);
  }
  // Compatibility is not a trust question: an incompatible assignment is accepted and refused per model
  // by the updater before download (`checkCompatibility`), so the refusal shows in `reported`.
}

/**
 * Throws INCOMPATIBLE, with a message an operator can act on, when this device cannot run the
 * release (architecture.md §2 manifest compatibility): wrong arch, agent too old, an execution provider the
 * profile does not configure, or more memory than the profile's budget — the manifest's declared
 * minimum, and our estimate from the model file's size. Pure.
 */
/** Rough resident need of one model host: fixed runtime overhead plus twice the weights. */
export function estimateHostMB(manifest: Pick<Manifest, "files">): number {
  const modelBytes = manifest.files.find((f) => f.path === "model.onnx")?.size ?? 0;
  return Math.ceil(HOST_OVERHEAD_MB + (WEIGHT_FACTOR * modelBytes) / 2 ** 20);
}

export function checkCompatibility(manifest: Manifest, facts: DeviceFacts): void {
  const name = `${manifest.model.name}@${manifest.model.version}`;
  const refuse = (why: string, details: Record<string, unknown>) => {
    throw new EdgeFleetError("INCOMPATIBLE", `${name}: ${why}`, { details: details });
  };
  const { arch, minMemoryMB, minAgentVersion, executionProviders } = manifest.compatibility;
  if (arch.length > 0 && !arch.includes(facts.arch)) {
    refuse(`built for ${arch.join(", ")}, device is ${facts.arch}`, { check: "arch", arch, device: facts.arch });
  }
  if (minAgentVersion && semver.lt(facts.agentVersion, minAgentVersion)) {
    refuse(`needs agent ${minAgentVersion} or later, this agent is ${facts.agentVersion}`, {
      check: "agentVersion",
      minAgentVersion,
      agentVersion: facts.agentVersion,
    });
  }
  const missing = executionProviders.filter((p) => !facts.executionProviders.includes(p));
  if (missing.length > 0) {
    refuse(`needs execution provider(s) ${missing.join(", ")}; profile has ${facts.executionProviders.join(", ")}`, {
      check: "executionProviders",
      missing,
    });
  }
  if (minMemoryMB > facts.memoryBudgetMB) {
    refuse(`needs ${minMemoryMB} MB, profile budget is ${facts.memoryBudgetMB} MB`, {
      check: "memory",
      minMemoryMB,
      memoryBudgetMB: facts.memoryBudgetMB,
    });
  }
  const modelBytes = manifest.files.find((f) => f.path === "model.onnx")?.size ?? 0;
  const estimateMB = estimateHostMB(manifest);
  if (estimateMB > facts.memoryBudgetMB) {
    refuse(
      `model file of ${Math.round(modelBytes / 2 ** 20)} MB needs about ${estimateMB} MB to run, profile budget is ${facts.memoryBudgetMB} MB`,
      { check: "memory", estimateMB, memoryBudgetMB: facts.memoryBudgetMB },
    );
  }
}

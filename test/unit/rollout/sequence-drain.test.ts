import { describe, expect, it } from "vitest";
import { createJobSource } from "../../../agent/updater/assignment-jobs.js";
import { CreateRolloutRequestSchema, normalizeDefinition } from "../../../fleet-server/rollout/definition.js";
import { sha256Hex } from "../../../shared/hash.js";
import { RolloutDefinitionSchema } from "../../../shared/http/rollout-definition.js";
import { AssignmentSchema } from "../../../shared/schemas/desired-state.js";
import { makeKeys, makeManifest, signedManifest } from "../agent-updater/helpers.js";

const request = { model: "vad", version: "2.0.0", target: { deviceIds: ["dev-1"] } };
const manifest = signedManifest(makeKeys(), makeManifest());
const SHA = sha256Hex("bundle");
const assignment = (extra: Record<string, unknown> = {}) => ({
  model: manifest.signed.model.name,
  bundle: { sha256: SHA, size: 10 },
  releaseCounter: 1,
  manifest,
  ...extra,
});
/** The agent's job for the assignment, as the updater's pipeline gets it from the accepted desired state. */
const jobOf = (a: ReturnType<typeof assignment>) => {
  const signed = {
    _type: "desired",
    deviceId: "dev-1",
    seq: 1,
    issuedAt: "2025-06-01T00:00:00Z",
    expires: "2025-06-02T00:00:00Z",
    assignments: [a],
  };
  const store = { lastDesired: () => ({ document: { signed, signatures: [] } }), model: () => null };
  return createJobSource(store as unknown as Parameters<typeof createJobSource>[0]).jobFor(a.model, SHA);
};

/** Issue 18: the rollout sets the deadline of live sequences on the version it replaces. */
describe("rollout sequenceDrainSeconds", () => {
  it("is parsed in whole seconds up to a day, with a message naming the field", () => {
    expect(CreateRolloutRequestSchema.parse({ ...request, sequenceDrainSeconds: 30 }).sequenceDrainSeconds).toBe(30);
    for (const bad of [-1, 1.5, 86_401, "30"]) {
      const r = CreateRolloutRequestSchema.safeParse({ ...request, sequenceDrainSeconds: bad });
      expect(r.success).toBe(false);
      expect(r.error!.issues[0]!.path).toEqual(["sequenceDrainSeconds"]);
    }
  });

  it("is stored in the definition (null when absent, and for definitions stored before it)", () => {
    const def = normalizeDefinition(CreateRolloutRequestSchema.parse({ ...request, sequenceDrainSeconds: 45 }));
    expect(RolloutDefinitionSchema.parse(def).sequenceDrainSeconds).toBe(45);
    const none = normalizeDefinition(CreateRolloutRequestSchema.parse(request));
    expect(none.sequenceDrainSeconds).toBeNull();
    const { sequenceDrainSeconds: _, ...older } = def;
    expect(RolloutDefinitionSchema.parse(older).sequenceDrainSeconds).toBeNull();
  });

  it("rides in the assignment (optional, backward compatible) to the agent's swap job in ms", () => {
    expect(AssignmentSchema.parse(assignment()).sequenceDrainSeconds).toBeUndefined();
    expect(AssignmentSchema.safeParse(assignment({ sequenceDrainSeconds: -5 })).success).toBe(false);
    expect(jobOf(assignment({ sequenceDrainSeconds: 12 }))!.sequenceDrainMs).toBe(12_000);
    expect(jobOf(assignment())).not.toHaveProperty("sequenceDrainMs");
  });
});

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Transport } from "../../../fleet-server/broker/transport.js";
import type { RolloutExecutor } from "../../../fleet-server/rollout/executor.js";
import { createRolloutService } from "../../../fleet-server/rollout/rollout-service.js";
import type { RolloutScheduler } from "../../../fleet-server/rollout/scheduler.js";
import { openDatabase } from "../../../fleet-server/store/db.js";
import { createDeviceRepo } from "../../../fleet-server/store/device-repo.js";
import { createModelRepo } from "../../../fleet-server/store/model-repo.js";
import { createRolloutRepo } from "../../../fleet-server/store/rollout-repo.js";
import { createFakeClock } from "../../../shared/clock.js";
import { createLogger } from "../../../shared/logger.js";
import { HealthPolicySchema, type SignedDesiredState } from "../../../shared/schemas/desired-state.js";
import { createTopics } from "../../../shared/topics.js";

const dir = mkdtempSync(join(tmpdir(), "republish-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("republishDesired (start and broker reconnect)", () => {
  it("re-retains every device's desired state except a revoked device's", async () => {
    const db = openDatabase(dir);
    const devices = createDeviceRepo(db);
    const now = new Date(0).toISOString();
    for (const id of ["dev-a", "dev-b", "dev-c"]) {
      devices.insert({ id, passwordHash: "x", tags: {}, profile: null, now });
    }
    // A desired-state envelope as the store decodes it (no assignment, unsigned: only republished here).
    const desired = (deviceId: string): SignedDesiredState => ({
      signed: {
        _type: "desired",
        deviceId,
        seq: 1,
        issuedAt: now,
        expires: now,
        assignments: [],
        healthPolicy: HealthPolicySchema.parse({}),
        rollout: null,
      },
      signatures: [],
    });
    devices.setDesired("dev-a", desired("dev-a"));
    devices.setDesired("dev-b", desired("dev-b"));
    // dev-c never had a desired state: nothing to publish for it.
    const published: { topic: string; payload: string; retain: boolean }[] = [];
    const transport: Transport = {
      publish: async (topic, payload, opts) =>
        void published.push({ topic, payload: String(payload), retain: opts.retain }),
      subscribe: async () => {},
      onLink: () => {},
      readRetained: async () => new Map(),
      close: async () => {},
    };
    const revoked = new Set(["dev-b"]);
    const topics = createTopics();
    const service = createRolloutService({
      log: createLogger({ name: "t", level: "silent", pretty: false }),
      clock: createFakeClock(0),
      topics,
      transport,
      devices,
      rollouts: createRolloutRepo(db),
      models: createModelRepo(db),
      // republishDesired reads only devices and the transport; the executor and scheduler are not reached.
      executor: {} as RolloutExecutor,
      scheduler: {} as RolloutScheduler,
      isRevoked: (id) => revoked.has(id),
    });
    await service.republishDesired();
    // Revocation cleared dev-b's retained desired state; a restart or reconnect must not put it back.
    expect(published).toEqual([
      { topic: topics.device("dev-a", "desired"), payload: JSON.stringify(desired("dev-a")), retain: true },
    ]);

    // Issue 14: given what the broker retains, only documents it lacks (or holds at another seq) go out.
    devices.setDesired("dev-c", { ...desired("dev-c"), signed: { ...desired("dev-c").signed, seq: 2 } });
    published.length = 0;
    expect(await service.republishDesired(new Map([["dev-a", 1]]))).toBe(1);
    expect(published.map((p) => p.topic)).toEqual([topics.device("dev-c", "desired")]);
    published.length = 0;
    expect(
      await service.republishDesired(
        new Map([
          ["dev-a", 1],
          ["dev-c", 1],
        ]),
      ),
    ).toBe(1);
    expect(published.map((p) => p.topic)).toEqual([topics.device("dev-c", "desired")]);
    expect(
      await service.republishDesired(
        new Map([
          ["dev-a", 1],
          ["dev-c", 2],
        ]),
      ),
    ).toBe(0);
    db.close();
  });
});

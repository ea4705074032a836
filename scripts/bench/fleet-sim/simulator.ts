import mqtt, { type MqttClient } from "mqtt";
import { verifyDesiredState } from "../../../agent/trust/verify-desired.js";
import type { Root } from "../../../shared/schemas/trust.js";
import type { Topics } from "../../../shared/topics.js";
import { benchRecord } from "../telemetry-ingest.js";
import { type Committed, reported } from "./reported-state.js";

/**
 * The fleet simulator (issue 14): N lightweight devices in one process, each its own MQTT connection
 * with its own credentials (enrolled through the real server), speaking the device protocol of
 * `shared/`: retained presence with an `offline` will, retained reported state, desired-state
 * handling (the director signature and the release-signed manifest checked by the agent's own
 * `verifyDesiredState` on a sample of devices, every device reporting the assignment as committed
 * with a passed probation) and telemetry batches acknowledged by the server. No ONNX, no bundle
 * download: what is measured is the server and the broker, not the devices.
 */

export interface SimDevice {
  id: string;
  password: string;
}

export interface FleetSimOptions {
  mqttUrl: string;
  topics: Topics;
  devices: readonly SimDevice[];
  /** Pinned root (root.json) for the sampled signature checks. */
  root: Root;
  /** Every `verifyEvery`-th device checks each desired state it receives (1 = all). */
  verifyEvery?: number;
  /** CONNECTs in flight at once (a real fleet does not connect in the same millisecond either). */
  connectWindow?: number;
}

interface DeviceState {
  dev: SimDevice;
  index: number;
  client: MqttClient | null;
  lastSeq: number;
  telemetrySeq: number;
  /** Last lifecycle event number sent (events are de-duplicated by it). */
  eventSeq: number;
  /** What the device runs per model (its committed assignment). */
  installed: Map<string, Committed>;
  /** Called on a telemetry ack (the storm waits on it). */
  onAck: ((lastSeq: number) => void) | null;
}

export interface FleetSim {
  /** Connects every device (bounded window); resolves with the time it took (ms). */
  connectAll(): Promise<number>;
  /** Resolves when every device holds a desired state assigning `sha256`; times from `since` (hrtime ns). */
  awaitDesired(sha256: string, since: bigint, timeoutMs: number): Promise<{ times: number[]; received: number }>;
  /** Every device flushes one batch of `records`, at most `window` batches unacknowledged at once. */
  telemetryStorm(records: number, window: number, timeoutMs: number): Promise<{ ms: number; acked: number }>;
  /**
   * From now on, devices for which `failing(id)` holds fail the probation of every new assignment
   * (they report it reverted, keeping what they had), the others commit it (issue 14's gate scenario).
   */
  setFailing(failing: (deviceId: string) => boolean): void;
  /** Devices that were assigned bundle `sha256`, and those of them that failed it (ground truth for the counts). */
  outcomes(sha256: string): { assigned: ReadonlySet<string>; failed: ReadonlySet<string> };
  /** Devices whose sampled signature check failed (must stay 0). */
  verifyFailures(): number;
  verified(): number;
  /**
   * Every desired message each device received, as device id → seq → count: retained re-deliveries
   * and duplicates included (issue 14: a replica failover must not deliver a document twice).
   */
  desiredDeliveries(): ReadonlyMap<string, ReadonlyMap<number, number>>;
  close(): Promise<void>;
}

export function createFleetSim(opts: FleetSimOptions): FleetSim {
  const { topics } = opts;
  const verifyEvery = Math.max(1, opts.verifyEvery ?? 100);
  const states: DeviceState[] = opts.devices.map((dev, index) => ({
    dev,
    index,
    client: null,
    lastSeq: 0,
    telemetrySeq: 0,
    installed: new Map(),
    eventSeq: 0,
    onAck: null,
  }));
  /** sha256 → (device index → hrtime ns of receipt) for the rollout being watched. */
  const received = new Map<string, Map<number, bigint>>();
  let watchers: (() => void)[] = [];
  let failures = 0;
  let verifiedCount = 0;
  const deliveries = new Map<string, Map<number, number>>();
  let failing: (deviceId: string) => boolean = () => false;
  const assignedTo = new Map<string, { assigned: Set<string>; failed: Set<string> }>();
  const outcomeOf = (sha: string) => {
    const o = assignedTo.get(sha) ?? { assigned: new Set<string>(), failed: new Set<string>() };
    assignedTo.set(sha, o);
    return o;
  };

  function countDelivery(id: string, seq: number | undefined): void {
    if (seq === undefined) return;
    const perSeq = deliveries.get(id) ?? new Map<number, number>();
    deliveries.set(id, perSeq);
    perSeq.set(seq, (perSeq.get(seq) ?? 0) + 1);
  }

  function onDesired(s: DeviceState, payload: Buffer): void {
    const at = process.hrtime.bigint();
    let doc: {
      signed?: {
        seq?: number;
        rollout?: { id: string } | null;
        assignments?: {
          model: string;
          bundle: { sha256: string };
          releaseCounter: number;
          manifest: { signed: { model: { version: string; variant: string } } };
        }[];
      };
    };
    try {
      doc = JSON.parse(payload.toString("utf8"));
    } catch {
      failures++;
      return;
    }
    const signed = doc.signed;
    countDelivery(s.dev.id, signed?.seq);
    if (!signed?.assignments || (signed.seq ?? 0) <= s.lastSeq) return;
    if (s.index % verifyEvery === 0) {
      const r = verifyDesiredState(doc, {
        root: opts.root,
        deviceId: s.dev.id,
        lastSeq: s.lastSeq,
        now: Date.now(),
        highestCounters: new Map(),
        badBundles: new Set(),
      });
      if (!r.ok) {
        failures++;
        return;
      }
      verifiedCount++;
    }
    s.lastSeq = signed.seq ?? s.lastSeq;
    // A model the document no longer assigns is removed (a rollback to "nothing"): report it gone.
    const assigned = new Set(signed.assignments.map((a) => a.model));
    for (const model of [...s.installed.keys()]) {
      if (assigned.has(model)) continue;
      s.installed.delete(model);
      s.client?.publish(
        topics.device(s.dev.id, "reported"),
        reported(s.dev.id, s.lastSeq, null, null, signed.rollout?.id ?? null),
        { qos: 1, retain: true },
      );
    }
    for (const a of signed.assignments) {
      const seen = received.get(a.bundle.sha256);
      if (seen && !seen.has(s.index)) seen.set(s.index, at);
      const m = a.manifest.signed.model;
      const committed = {
        version: m.version,
        variant: m.variant,
        sha256: a.bundle.sha256,
        releaseCounter: a.releaseCounter,
      };
      const before = s.installed.get(a.model) ?? null;
      if (before?.sha256 === committed.sha256) {
        // Already running it (e.g. a rollback to what a failing device kept): acknowledge the new
        // seq with the current state, as an agent does; a past failure stays in its events.
        s.client?.publish(
          topics.device(s.dev.id, "reported"),
          reported(s.dev.id, s.lastSeq, a.model, before, signed.rollout?.id ?? null),
          { qos: 1, retain: true },
        );
        continue;
      }
      // A healthy agent commits the new version; a failing one reverts to what it had.
      const fails = failing(s.dev.id);
      if (!fails) s.installed.set(a.model, committed);
      const o = outcomeOf(committed.sha256);
      o.assigned.add(s.dev.id);
      if (fails) {
        o.failed.add(s.dev.id);
        // The agent's lifecycle event: what the server still knows once the report moves on.
        s.client?.publish(
          topics.device(s.dev.id, "events"),
          JSON.stringify({
            type: "update.transition",
            deviceId: s.dev.id,
            ts: new Date().toISOString(),
            eventSeq: ++s.eventSeq,
            model: a.model,
            bundle: committed.sha256,
            rolloutId: signed.rollout?.id ?? null,
            from: "probation",
            to: "reverted",
            error: { code: "ERROR_RATE_EXCEEDED", message: "simulated: the candidate failed its probation" },
          }),
          { qos: 1 },
        );
      }
      s.client?.publish(
        topics.device(s.dev.id, "reported"),
        fails
          ? reported(s.dev.id, s.lastSeq, a.model, before, signed.rollout?.id ?? null, committed)
          : reported(s.dev.id, s.lastSeq, a.model, committed, signed.rollout?.id ?? null),
        { qos: 1, retain: true },
      );
    }
    if (watchers.length > 0) for (const w of watchers) w();
  }

  async function connectOne(s: DeviceState): Promise<void> {
    const presence = topics.device(s.dev.id, "presence");
    const client = await mqtt.connectAsync(opts.mqttUrl, {
      clientId: s.dev.id,
      username: s.dev.id,
      password: s.dev.password,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 120_000,
      keepalive: 300,
      clean: true,
      will: { topic: presence, payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    s.client = client;
    const desired = topics.device(s.dev.id, "desired");
    const ack = topics.device(s.dev.id, "telemetry/ack");
    client.on("message", (topic, payload) => {
      if (topic === desired) onDesired(s, payload);
      else if (topic === ack) {
        const a = JSON.parse(payload.toString("utf8")) as { lastSeq: number };
        s.onAck?.(a.lastSeq);
      }
    });
    await client.subscribeAsync([desired, ack], { qos: 1 });
    await client.publishAsync(presence, "online", { qos: 1, retain: true });
    await client.publishAsync(topics.device(s.dev.id, "reported"), reported(s.dev.id, 0, null, null, null), {
      qos: 1,
      retain: true,
    });
  }

  async function pool<T>(items: readonly T[], width: number, fn: (x: T) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < items.length) await fn(items[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  }

  return {
    desiredDeliveries: () => deliveries,
    setFailing(f) {
      failing = f;
    },
    outcomes: (sha) => outcomeOf(sha),

    async connectAll() {
      const t0 = performance.now();
      await pool(states, opts.connectWindow ?? 200, connectOne);
      return performance.now() - t0;
    },

    awaitDesired(sha256, since, timeoutMs) {
      const seen = received.get(sha256) ?? new Map<number, bigint>();
      received.set(sha256, seen);
      return new Promise((resolve) => {
        const finish = () => {
          watchers = watchers.filter((w) => w !== check);
          clearTimeout(timer);
          const times = [...seen.values()].map((t) => Number(t - since) / 1e6).sort((a, b) => a - b);
          resolve({ times, received: seen.size });
        };
        const check = () => {
          if (seen.size >= states.length) finish();
        };
        const timer = setTimeout(finish, timeoutMs);
        watchers.push(check);
        check();
      });
    },

    async telemetryStorm(records, window, timeoutMs) {
      const t0 = performance.now();
      let acked = 0;
      const deadline = Date.now() + timeoutMs;
      await pool(states, window, async (s) => {
        if (!s.client || Date.now() > deadline) return;
        const first = s.telemetrySeq + 1;
        const batch = Array.from({ length: records }, (_, i) => ({ ...benchRecord(first + i), seq: first + i }));
        s.telemetrySeq += records;
        const last = s.telemetrySeq;
        const done = new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
          s.onAck = (ackLast) => {
            if (ackLast >= last) {
              clearTimeout(t);
              acked++;
              resolve();
            }
          };
        });
        const body = {
          v: 1,
          deviceId: s.dev.id,
          firstSeq: first,
          lastSeq: last,
          sentAt: Date.now(),
          dropped: 0,
          records: batch,
        };
        await s.client.publishAsync(topics.device(s.dev.id, "telemetry"), JSON.stringify(body), { qos: 1 });
        await done;
        s.onAck = null;
      });
      return { ms: performance.now() - t0, acked };
    },

    verifyFailures: () => failures,
    verified: () => verifiedCount,

    async close() {
      await pool(states, 500, async (s) => {
        await s.client?.endAsync(true).catch(() => undefined);
        s.client = null;
      });
    },
  };
}

import { randomBytes } from "node:crypto";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Topics } from "../../shared/topics.js";
import { isValidDeviceUsername } from "./acl.js";
import { admitCommands, CONTROL_RESPONSE_TOPIC, CONTROL_TOPIC, revokeCommands } from "./dynsec.js";
import type { Transport } from "./transport.js";

/**
 * What the server asks of its broker about who may connect (issue 20 §5), the same for every broker:
 * `admit` before a new device's credentials are handed out, `revoke` to refuse a device from now on
 * and drop its live connection (its will not sent).
 */
export interface BrokerAccess {
  readonly kind: "embedded" | "mosquitto-dynsec" | "unmanaged";
  admit(deviceId: string, password: string): Promise<void>;
  revoke(deviceId: string): Promise<void>;
  /** Brings the broker in line with the store after a (re)connect: revocations made meanwhile. */
  reconcile(isRevoked: (deviceId: string) => boolean): Promise<void>;
}

/** aedes asks the server at every CONNECT, so admitting is a no-op; revoking drops the connection. */
export function embeddedBrokerAccess(disconnect: (deviceId: string) => Promise<void>): BrokerAccess {
  return {
    kind: "embedded",
    admit: async () => {},
    revoke: disconnect,
    reconcile: async () => {},
  };
}

/**
 * An external broker the server does not administer (no `--mosquitto-dynsec`): nothing changes
 * live, so access control, revocation included, is the broker operator's (docs/operations.md).
 */
export function unmanagedBrokerAccess(log: Logger): BrokerAccess {
  return {
    kind: "unmanaged",
    admit: async () => {},
    revoke: async (deviceId) => {
      log.warn(
        { deviceId },
        "external broker not administered by the server (no --mosquitto-dynsec): refuse this device on the broker too",
      );
    },
    reconcile: async () => {},
  };
}

interface DynsecResponse {
  command: string;
  error?: string;
  data?: unknown;
}

/**
 * Mosquitto's dynamic-security plugin, administered over the server's own MQTT connection. Commands
 * of one call go in one message (the plugin runs them in order) with a correlation id; the answer
 * comes on the response topic. A broker that does not answer in `timeoutMs` fails the call with
 * NOT_CONNECTED (HTTP 503): an enrollment then hands out no credentials the broker does not know.
 */
export async function dynsecBrokerAccess(deps: {
  log: Logger;
  topics: Topics;
  transport: Transport;
  /** How long to wait for the plugin's answer (default 10 s). */
  timeoutMs?: number;
}): Promise<BrokerAccess> {
  const { log, topics, transport } = deps;
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const pending = new Map<string, (responses: DynsecResponse[]) => void>();
  await transport.subscribe(CONTROL_RESPONSE_TOPIC, (_topic, payload) => {
    let parsed: { responses?: (DynsecResponse & { correlationData?: string })[] };
    try {
      parsed = JSON.parse(payload.toString("utf8")) as typeof parsed;
    } catch {
      return void log.warn("dynsec response is not JSON; ignored");
    }
    const responses = parsed.responses ?? [];
    const id = responses.find((r) => typeof r.correlationData === "string")?.correlationData;
    const resolve = id ? pending.get(id) : undefined;
    if (!id || !resolve) return;
    pending.delete(id);
    resolve(responses);
  });

  async function run(commands: Record<string, unknown>[]): Promise<DynsecResponse[]> {
    const id = randomBytes(8).toString("hex");
    const answer = new Promise<DynsecResponse[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new EdgeFleetError("NOT_CONNECTED", `Mosquitto dynamic security did not answer in ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
    const payload = JSON.stringify({ commands: commands.map((c) => ({ ...c, correlationData: id })) });
    // While the broker is away the client queues the publish and its promise waits: the answer's
    // timeout decides, and both promises stay handled whichever settles first.
    const sent = transport.publish(CONTROL_TOPIC, payload, { qos: 1, retain: false });
    const [, responses] = await Promise.all([sent, answer]);
    return responses;
  }

  const failures = (responses: DynsecResponse[], tolerated: RegExp) =>
    responses.filter((r) => r.error !== undefined && !tolerated.test(r.error));

  return {
    kind: "mosquitto-dynsec",
    async admit(deviceId, password) {
      let bad = failures(await run(admitCommands(topics, deviceId, password)), /^$/);
      if (bad.some((r) => /exists/i.test(r.error!))) {
        // The store has no such device (the caller checked), so a client or role of that name is a
        // leftover of an attempt that failed half-way: remove it and admit again, once.
        await run(revokeCommands(deviceId));
        bad = failures(await run(admitCommands(topics, deviceId, password)), /^$/);
      }
      if (bad.length > 0) {
        await run(revokeCommands(deviceId)).catch(() => undefined);
        throw new EdgeFleetError(
          "NOT_CONNECTED",
          `Mosquitto refused to admit ${deviceId}: ${bad.map((r) => `${r.command}: ${r.error}`).join("; ")}`,
        );
      }
      log.info({ deviceId }, "device admitted to Mosquitto dynamic security");
    },
    async revoke(deviceId) {
      // "not found" is fine: revoked twice, or never admitted (enrolled before dynsec).
      const bad = failures(await run(revokeCommands(deviceId)), /not found/i);
      if (bad.length > 0) {
        throw new EdgeFleetError("NOT_CONNECTED", `Mosquitto refused to revoke ${deviceId}: ${bad[0]!.error}`);
      }
      log.info({ deviceId }, "device removed from Mosquitto dynamic security (disconnected)");
    },
    async reconcile(isRevoked) {
      const [list] = await run([{ command: "listClients", verbose: false }]);
      const data = list?.data as { clients?: unknown[] } | undefined;
      const names = (data?.clients ?? []).filter((c): c is string => typeof c === "string");
      const stale = names.filter((n) => isValidDeviceUsername(n) && isRevoked(n));
      if (stale.length === 0) return;
      const bad = failures(await run(stale.flatMap(revokeCommands)), /not found/i);
      // What a revocation that could not reach the broker left undone: the retained topics too.
      for (const id of stale) {
        for (const kind of ["desired", "reported", "presence"] as const) {
          await transport.publish(topics.device(id, kind), "", { qos: 1, retain: true });
        }
      }
      log.warn({ devices: stale, failed: bad.length }, "revoked devices removed from Mosquitto at reconnect");
    },
  };
}

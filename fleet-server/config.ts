import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { EdgeFleetError } from "../shared/errors.js";
import { PricesSchema } from "../shared/http/cost.js";
import type { Logger } from "../shared/logger.js";
import { DEFAULT_TOPIC_PREFIX } from "../shared/topics.js";
import { ServerTelemetryConfigSchema } from "./telemetry/telemetry-config.js";

const Port = z.number().int().min(0).max(65535);

/** The repository's `device-profiles/`, found relative to this file rather than the cwd. */
export function defaultProfilesDir(): string {
  return fileURLToPath(new URL("../device-profiles/", import.meta.url));
}

/** Options of `startFleetServer` (and, via the CLI, of the `fleet-server` command). */
export const FleetServerConfigSchema = z.object({
  dataDir: z.string().min(1),
  /** 0 = pick a free port (tests). */
  httpPort: Port.default(8080),
  httpHost: z.string().min(1).default("127.0.0.1"),
  /** Embedded broker TCP port; 0 = pick a free port. Ignored with `mqttUrl`. */
  mqttPort: Port.default(1883),
  /** Embedded broker bind address; defaults to `httpHost`. */
  mqttHost: z.string().min(1).optional(),
  /** External broker (Mosquitto, EMQX, ...) instead of the embedded one. */
  mqttUrl: z.url({ protocol: /^(mqtts?|wss?|tcp|ssl)$/ }).optional(),
  mqttUsername: z.string().min(1).optional(),
  mqttPassword: z.string().optional(),
  /**
   * The external broker is Mosquitto with the dynamic-security plugin and the server's user may
   * administer it (`broker-config --mosquitto`): enrollment and revocation reach it live (issue 20 §5).
   */
  mosquittoDynsec: z.boolean().default(false),
  topicPrefix: z.string().min(1).default(DEFAULT_TOPIC_PREFIX),
  /**
   * Cap on bundle bytes served per second to one device over MQTT chunks (metered cellular
   * links, shared broker bandwidth). Unset = unlimited.
   */
  deviceBandwidthBytesPerSec: z.number().int().min(1024).optional(),
  /**
   * Operator-supplied PEM certificate and key: HTTPS for the API and `mqtts://` for the embedded
   * broker (docs/security.md "TLS"). Both or neither.
   */
  tlsCertPath: z.string().min(1).optional(),
  tlsKeyPath: z.string().min(1).optional(),
  /** CA bundle (PEM) the server trusts for its own MQTT connection (its broker or an external one). */
  tlsCaPath: z.string().min(1).optional(),
  /** Upper bound for `POST /v1/uploads`. */
  maxUploadBytes: z
    .number()
    .int()
    .min(1)
    .default(1024 ** 3),
  /**
   * Device profiles (`device-profiles/*.json`): each device's bundle variant is chosen from its
   * profile's `preferredVariants` and `memoryBudgetMB` (issue 5). Read once at start.
   */
  profilesDir: z
    .string()
    .min(1)
    .default(() => defaultProfilesDir()),
  /**
   * Offline release signing (docs/security.md "Offline release signing"): the server holds no
   * release key; uploads and re-releases wait as pending releases until an operator uploads a
   * threshold of release signatures made with `fleetctl release sign`.
   */
  offlineRelease: z.boolean().default(false),
  /**
   * PostgreSQL instead of the embedded SQLite file `{dataDir}/fleet.db` (issue 14,
   * docs/operations.md "PostgreSQL"): `postgres://user:password@host:5432/db`. Keys and bundles stay
   * in `dataDir` either way.
   */
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "a postgres:// or postgresql:// URL")
    .optional(),
  /** Telemetry retention and drift alert thresholds (issue 6). */
  telemetry: ServerTelemetryConfigSchema,
  /**
   * Check every JSON response against the HTTP contract before sending it (docs/http-api.md):
   * for tests and development; the CLI turns it on with `EDGEFLEET_CHECK_RESPONSES=1`.
   */
  checkResponses: z.boolean().default(false),
  /**
   * Prices for cost per prediction (issue 22, docs/operations.md "Cost per prediction"): per CPU-hour
   * on the devices and per GB (10^9 bytes) of bundles sent. Unset: the cost route shows no money.
   */
  prices: PricesSchema.optional(),
  /**
   * Several servers on one store and one external broker (issue 14, docs/operations.md "Replicas").
   * `shareGroup`: device messages reach one replica of the group (MQTT shared subscriptions) instead
   * of every replica. `advertiseUrl`: how the other replicas reach this one's API (rollout commands
   * are forwarded to the leader); default: the URL it listens on. `leaseTtlMs`: how long a dead
   * leader keeps the rollouts lease (its successor waits this long at most).
   */
  replicas: z
    .object({
      shareGroup: z
        .string()
        .regex(/^[A-Za-z0-9_-]{1,64}$/, "letters, digits, _ and - only (it becomes a topic level)")
        .optional(),
      advertiseUrl: z.url({ protocol: /^https?$/ }).optional(),
      leaseTtlMs: z.number().int().min(1000).max(600_000).default(6000),
    })
    .default({ leaseTtlMs: 6000 }),
});
export type FleetServerConfig = z.infer<typeof FleetServerConfigSchema>;
export type FleetServerOptions = z.input<typeof FleetServerConfigSchema> & { log?: Logger };

/**
 * The operator's certificate, key and CA, read once at start, after the checks that span several
 * options (a certificate needs its key; dynsec administers an external Mosquitto only).
 */
export function readTlsFiles(config: FleetServerConfig): { tls?: { cert: Buffer; key: Buffer }; tlsCa?: Buffer } {
  if ((config.tlsCertPath === undefined) !== (config.tlsKeyPath === undefined)) {
    throw new EdgeFleetError("VALIDATION_FAILED", "tlsCertPath and tlsKeyPath go together");
  }
  if (config.mosquittoDynsec && config.mqttUrl === undefined) {
    throw new EdgeFleetError("VALIDATION_FAILED", "mosquittoDynsec administers an external Mosquitto: give mqttUrl");
  }
  const tls =
    config.tlsCertPath && config.tlsKeyPath
      ? { cert: readFileSync(config.tlsCertPath), key: readFileSync(config.tlsKeyPath) }
      : undefined;
  const tlsCa = config.tlsCaPath ? readFileSync(config.tlsCaPath) : tls?.cert;
  return { ...(tls ? { tls } : {}), ...(tlsCa ? { tlsCa } : {}) };
}

/** A host to put in a URL others can dial: wildcard binds are reached via loopback locally. */
export function dialHost(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

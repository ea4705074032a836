import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { DeviceIdSchema } from "../../shared/schemas/common.js";
import { DEFAULT_TOPIC_PREFIX } from "../../shared/topics.js";
import { JobsConfigSchema } from "../jobs/job-config.js";
import { StreamJobsConfigSchema } from "../jobs/stream-jobs.js";
import { TelemetryConfigSchema } from "../telemetry/telemetry-config.js";
import { MqttTimingSchema } from "../transport/mqtt-config.js";
import { AgentTlsSchema } from "../transport/tls.js";
import { packageRoot } from "./package-root.js";

/** The socket API's default request body cap: a 1080p float32 image as JSON fits with room to spare. */
export const DEFAULT_SOCKET_BODY_LIMIT = 16 * 1024 * 1024;

/** Agent configuration: a JSON file (`--config`) merged with flags; flags win. */
export const AgentConfigSchema = z
  .object({
    deviceId: DeviceIdSchema,
    mqttUrl: z.string().regex(/^(mqtts?|wss?|tcp):\/\//, "mqttUrl must be an mqtt://, mqtts://, ws:// or wss:// URL"),
    password: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    dataDir: z.string().min(1),
    socketPath: z.string().min(1).optional(),
    /**
     * Largest request body the local socket API accepts, in bytes; larger ones get 413
     * PAYLOAD_TOO_LARGE (issue 23: documented as configurable, now it is). 64 KiB .. 1 GiB.
     */
    socketBodyLimitBytes: z
      .number()
      .int()
      .min(64 * 1024)
      .max(1024 * 1024 * 1024)
      .default(DEFAULT_SOCKET_BODY_LIMIT),
    rootPath: z.string().min(1),
    /** Device profile id or path to a profile file; auto-detected when absent. */
    profile: z.string().min(1).optional(),
    profilesDir: z.string().min(1).optional(),
    topicPrefix: z.string().min(1).default(DEFAULT_TOPIC_PREFIX),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
    download: z
      .object({
        chunkSize: z
          .number()
          .int()
          .min(64 * 1024)
          .max(256 * 1024)
          .default(128 * 1024),
        /** A fixed number of chunk requests in flight; absent: the adaptive window (agent/updater/chunk-window.ts). */
        window: z.number().int().min(1).max(16).optional(),
        timeoutMs: z.number().int().min(100).default(10_000),
        maxTries: z.number().int().min(1).default(5),
      })
      .strict()
      .default({ chunkSize: 128 * 1024, timeoutMs: 10_000, maxTries: 5 }),
    /** Telemetry buffer and flush (issue 6; docs/operations.md "Telemetry buffer durability"). */
    telemetry: TelemetryConfigSchema,
    /** MQTT link timing: keepalive, connect timeout, reconnect backoff, offline queue (agent/transport/mqtt-config.ts). */
    mqtt: MqttTimingSchema,
    /** mqtts:// with a pinned CA, optional client certificate (issue 7, agent/transport/tls.ts). */
    tls: AgentTlsSchema.optional(),
    /** Group (name or gid) owning the socket's 0750 directory (issue 7, agent/api/socket-dir.ts). */
    socketGroup: z.union([z.string().min(1).max(64), z.number().int().min(0)]).optional(),
    /** Scheduled batch jobs (issue 8, agent/jobs/job-config.ts; docs/operations.md "Batch jobs"). */
    jobs: JobsConfigSchema,
    /** Stream jobs over local NDJSON files (issue 18, agent/jobs/stream-jobs.ts; docs/operations.md "Stream jobs"). */
    streamJobs: StreamJobsConfigSchema,
    /**
     * Ground-truth feedback (issue 22, docs/operations.md "Accuracy gate"): the prediction window's
     * size and horizon, and how often joined figures may republish the `reported` document.
     */
    feedback: z
      .object({
        capacity: z.number().int().min(1).max(1_000_000).optional(),
        horizonSeconds: z
          .number()
          .int()
          .min(1)
          .max(7 * 24 * 3600)
          .optional(),
        reportSeconds: z.number().min(1).max(3600).default(30),
      })
      .strict()
      .default({ reportSeconds: 30 }),
    /**
     * Cost per prediction (issue 22, docs/operations.md "Cost per prediction"): how often each
     * host's resident memory is sampled, and how often new figures may republish `reported`. Unlike
     * feedback, inference is nearly always flowing, so this period is every busy device's `reported`
     * rate: 300 s keeps 10,000 devices at ~33 documents/s on the server (each a write and a planner poke).
     */
    cost: z
      .object({
        rssSampleSeconds: z.number().min(0.1).max(3600).default(30),
        reportSeconds: z.number().min(1).max(3600).default(300),
      })
      .strict()
      .default({ rssSampleSeconds: 30, reportSeconds: 300 }),
    /** Retries after a storage fault (issue 20 §2): full-jitter backoff bounds; defaults 1 s .. 60 s. */
    storage: z
      .object({ baseMs: z.number().int().min(10).max(600_000), capMs: z.number().int().min(10).max(3_600_000) })
      .strict()
      .optional(),
  })
  .strict()
  .refine((c) => c.password !== undefined || c.passwordFile !== undefined, "password or passwordFile is required");
export type AgentConfigInput = z.input<typeof AgentConfigSchema>;

/** Config with defaults and paths resolved, the password read. */
export interface AgentConfig extends Omit<z.infer<typeof AgentConfigSchema>, "passwordFile"> {
  password: string;
  socketPath: string;
  profilesDir: string;
}

/** The repository's `device-profiles/`, found relative to this file rather than the cwd. */
export function defaultProfilesDir(): string {
  return join(packageRoot(import.meta.url), "device-profiles");
}

/** Validates and completes a config object; throws VALIDATION_FAILED with every problem listed. */
export async function resolveAgentConfig(input: unknown): Promise<AgentConfig> {
  const parsed = AgentConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "config"}: ${i.message}`);
    throw new EdgeFleetError("VALIDATION_FAILED", `invalid agent config:\n  ${problems.join("\n  ")}`, {
      details: { problems },
    });
  }
  const { passwordFile, ...c } = parsed.data;
  let password = c.password;
  if (password === undefined && passwordFile) {
    try {
      password = (await readFile(passwordFile, "utf8")).trim();
    } catch (err) {
      throw new EdgeFleetError(
        "VALIDATION_FAILED",
        `cannot read passwordFile ${passwordFile}: ${(err as Error).message}`,
      );
    }
  }
  const dataDir = resolve(c.dataDir);
  return {
    ...c,
    password: password!,
    dataDir,
    rootPath: resolve(c.rootPath),
    socketPath: resolve(c.socketPath ?? join(dataDir, "agent.sock")),
    profilesDir: resolve(c.profilesDir ?? defaultProfilesDir()),
  };
}

/** Reads `--config` (if any) and overlays flags that were given. */
export async function loadAgentConfig(
  configPath: string | undefined,
  flags: Record<string, unknown>,
): Promise<AgentConfig> {
  let file: Record<string, unknown> = {};
  if (configPath) {
    try {
      file = JSON.parse(await readFile(configPath, "utf8")) as Record<string, unknown>;
    } catch (err) {
      throw new EdgeFleetError("VALIDATION_FAILED", `cannot read config ${configPath}: ${(err as Error).message}`);
    }
  }
  const given = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
  return resolveAgentConfig({ ...file, ...given });
}

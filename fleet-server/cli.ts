import { Command, InvalidArgumentError } from "commander";
import { createLogger } from "../shared/logger.js";
import { runBrokerConfigCli } from "./broker/broker-config.js";
import { startFleetServer } from "./main.js";

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("must be a port number 0-65535");
  return n;
}

/** `--prices 0.05,0.09,USD`: per CPU-hour, per GB transferred, currency (issue 22, cost per prediction). */
function prices(value: string): { cpuHour: number; gbTransferred: number; currency: string } {
  const [cpu, gb, currency] = value.split(",").map((x) => x.trim());
  const cpuHour = Number(cpu);
  const gbTransferred = Number(gb);
  if (!cpu || !gb || !currency || !(cpuHour >= 0) || !(gbTransferred >= 0)) {
    throw new InvalidArgumentError("must be <per CPU-hour>,<per GB transferred>,<currency>, e.g. 0.05,0.09,USD");
  }
  return { cpuHour, gbTransferred, currency };
}

/** `fleet-server` command: flags → startFleetServer, and a clean stop on SIGINT/SIGTERM. */
export async function runCli(argv: readonly string[]): Promise<void> {
  if (argv[2] === "broker-config") return runBrokerConfigCli([argv[0]!, argv[1]!, ...argv.slice(3)]);
  const program = new Command("fleet-server")
    .description("EdgeFleet fleet server: model registry, signed bundles, rollouts over MQTT")
    .requiredOption("--data-dir <dir>", "directory for the database, keys and bundles", process.env.EDGEFLEET_DATA_DIR)
    .option("--http-port <port>", "HTTP API port (0 = random)", port, 8080)
    .option("--http-host <host>", "HTTP API bind address", "127.0.0.1")
    .option("--mqtt-port <port>", "embedded MQTT broker port (0 = random)", port, 1883)
    .option("--mqtt-url <url>", "use this external MQTT broker instead of the embedded one")
    .option("--mqtt-username <name>", "username for the external broker")
    .option("--mqtt-password <password>", "password for the external broker (or EDGEFLEET_MQTT_PASSWORD)")
    .option(
      "--mosquitto-dynsec",
      "the external broker is Mosquitto with dynamic security: admit and revoke devices live",
    )
    .option("--topic-prefix <prefix>", "MQTT topic prefix", "fleet/v1")
    .option("--tls-cert <file>", "PEM certificate: serve HTTPS and mqtts:// (with --tls-key)")
    .option("--tls-key <file>", "PEM private key for --tls-cert")
    .option("--tls-ca <file>", "PEM CA bundle the server trusts for its own MQTT connection")
    .option("--device-bandwidth <bytesPerSec>", "cap on bundle bytes/s served to each device over MQTT", Number)
    .option("--profiles-dir <dir>", "device profiles used to choose each device's variant (default: bundled)")
    .option("--offline-release", "hold no release key: releases wait for signatures made with fleetctl release sign")
    .option("--prices <cpuHour,gb,currency>", "prices for cost per prediction, e.g. 0.05,0.09,USD", prices)
    .option(
      "--share-group <name>",
      "replicas: device messages go to one replica of this MQTT shared-subscription group",
    )
    .option("--advertise-url <url>", "replicas: this server's API URL as the other replicas reach it")
    .option("--lease-ttl-ms <ms>", "replicas: how long a dead leader keeps the rollouts lease", Number)
    .option(
      "--database-url <url>",
      "PostgreSQL store (postgres://…) instead of {data-dir}/fleet.db (or EDGEFLEET_DATABASE_URL)",
      process.env.EDGEFLEET_DATABASE_URL,
    );
  program.parse([...argv]);
  const o = program.opts<{
    dataDir: string;
    httpPort: number;
    httpHost: string;
    mqttPort: number;
    mqttUrl?: string;
    mqttUsername?: string;
    mqttPassword?: string;
    mosquittoDynsec?: boolean;
    topicPrefix: string;
    deviceBandwidth?: number;
    profilesDir?: string;
    tlsCert?: string;
    tlsKey?: string;
    tlsCa?: string;
    offlineRelease?: boolean;
    prices?: { cpuHour: number; gbTransferred: number; currency: string };
    shareGroup?: string;
    advertiseUrl?: string;
    leaseTtlMs?: number;
    databaseUrl?: string;
  }>();
  const log = createLogger({ name: "fleet-server" });
  const password = o.mqttPassword ?? process.env.EDGEFLEET_MQTT_PASSWORD;
  const server = await startFleetServer({
    dataDir: o.dataDir,
    httpPort: o.httpPort,
    httpHost: o.httpHost,
    mqttPort: o.mqttPort,
    topicPrefix: o.topicPrefix,
    ...(o.mqttUrl !== undefined ? { mqttUrl: o.mqttUrl } : {}),
    ...(o.mqttUsername !== undefined ? { mqttUsername: o.mqttUsername } : {}),
    ...(password !== undefined ? { mqttPassword: password } : {}),
    mosquittoDynsec: o.mosquittoDynsec === true,
    ...(o.deviceBandwidth !== undefined ? { deviceBandwidthBytesPerSec: o.deviceBandwidth } : {}),
    ...(o.profilesDir !== undefined ? { profilesDir: o.profilesDir } : {}),
    ...(o.tlsCert !== undefined ? { tlsCertPath: o.tlsCert } : {}),
    ...(o.tlsKey !== undefined ? { tlsKeyPath: o.tlsKey } : {}),
    ...(o.tlsCa !== undefined ? { tlsCaPath: o.tlsCa } : {}),
    offlineRelease: o.offlineRelease === true,
    ...(o.prices ? { prices: o.prices } : {}),
    replicas: {
      ...(o.shareGroup !== undefined ? { shareGroup: o.shareGroup } : {}),
      ...(o.advertiseUrl !== undefined ? { advertiseUrl: o.advertiseUrl } : {}),
      ...(o.leaseTtlMs !== undefined ? { leaseTtlMs: o.leaseTtlMs } : {}),
    },
    ...(o.databaseUrl ? { databaseUrl: o.databaseUrl } : {}),
    checkResponses: process.env.EDGEFLEET_CHECK_RESPONSES === "1",
    log,
  });
  log.info({ adminTokenFile: `${o.dataDir}/admin-token`, rootJson: server.rootJsonPath }, "ready");
  const stop = (signal: string) => {
    log.info({ signal }, "shutting down");
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
}

await runCli(process.argv).catch((err: unknown) => {
  console.error(`fleet-server: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});

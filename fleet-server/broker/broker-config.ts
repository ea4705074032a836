import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { createTopics, DEFAULT_TOPIC_PREFIX } from "../../shared/topics.js";
import { createSecurityRepo } from "../auth/security-repo.js";
import { openStore } from "../store/db.js";
import { findDynsecPlugin, mosquittoHash, writeMosquittoConfig } from "./mosquitto-config.js";

const ServerMqttSchema = z.object({ username: z.string().min(1), password: z.string().min(16) });

/**
 * `fleet-server broker-config --mosquitto <dir>`: Mosquitto's dynamic-security bootstrap state and a
 * config that loads the plugin, from the server's data dir (the server's own MQTT credentials and
 * every non-revoked device's `$7$` hash). The offline path (issue 20 §5): with the server running
 * `--mosquitto-dynsec`, enrollments and revocations reach Mosquitto live and this is only needed to
 * set a broker up, or to rebuild its state from the server's store (stop Mosquitto, regenerate, start).
 */
export function generateMosquittoFiles(opts: {
  dataDir: string;
  /** The server's PostgreSQL store, when it has one (`--database-url`). */
  databaseUrl?: string;
  outDir: string;
  topicPrefix?: string;
  listener?: { port: number; host: string };
  /** Path of `mosquitto_dynamic_security.so`; found in the usual places when absent. */
  plugin?: string;
}) {
  const plugin = opts.plugin ?? findDynsecPlugin();
  if (!plugin) {
    throw new EdgeFleetError("NOT_FOUND", "mosquitto_dynamic_security.so not found: pass --dynsec-plugin <path>");
  }
  const mqttPath = join(opts.dataDir, "server-mqtt.json");
  if (!existsSync(mqttPath)) {
    throw new EdgeFleetError("NOT_FOUND", `${mqttPath} missing: start the fleet server once to create it`);
  }
  const server = ServerMqttSchema.parse(JSON.parse(readFileSync(mqttPath, "utf8")));
  const db = openStore(opts);
  try {
    const devices = createSecurityRepo(db)
      .activeBrokerCredentials()
      .map((c) => ({ username: c.deviceId, hash: c.mosquittoHash }));
    const paths = writeMosquittoConfig({
      dir: opts.outDir,
      topics: createTopics(opts.topicPrefix ?? DEFAULT_TOPIC_PREFIX),
      server: { username: server.username, hash: mosquittoHash(server.password) },
      devices,
      plugin,
      ...(opts.listener ? { listener: opts.listener } : {}),
    });
    return { ...paths, devices: devices.length, server: { username: server.username, password: server.password } };
  } finally {
    db.close();
  }
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError("must be a port number 1-65535");
  return n;
}

export async function runBrokerConfigCli(argv: readonly string[]): Promise<void> {
  const program = new Command("fleet-server broker-config")
    .description("generate Mosquitto dynamic-security state and config with the embedded broker's rules")
    .requiredOption("--data-dir <dir>", "the fleet server's data directory", process.env.EDGEFLEET_DATA_DIR)
    .requiredOption(
      "--mosquitto <dir>",
      "write dynamic-security.json and mosquitto.conf into this directory (Mosquitto stopped)",
    )
    .option("--topic-prefix <prefix>", "MQTT topic prefix", DEFAULT_TOPIC_PREFIX)
    .option("--listener-port <port>", "also emit a `listener` line for this port", port)
    .option("--listener-host <host>", "listener bind address", "0.0.0.0")
    .option("--dynsec-plugin <path>", "path of mosquitto_dynamic_security.so (default: found in the usual places)")
    .option("--database-url <url>", "the server's PostgreSQL store, if it has one", process.env.EDGEFLEET_DATABASE_URL);
  program.parse([...argv]);
  const o = program.opts<{
    dataDir: string;
    mosquitto: string;
    topicPrefix: string;
    listenerPort?: number;
    listenerHost: string;
    dynsecPlugin?: string;
    databaseUrl?: string;
  }>();
  const r = generateMosquittoFiles({
    dataDir: o.dataDir,
    outDir: o.mosquitto,
    ...(o.databaseUrl ? { databaseUrl: o.databaseUrl } : {}),
    topicPrefix: o.topicPrefix,
    ...(o.dynsecPlugin ? { plugin: o.dynsecPlugin } : {}),
    ...(o.listenerPort ? { listener: { port: o.listenerPort, host: o.listenerHost } } : {}),
  });
  console.log(`wrote ${r.dynsec} (${r.devices} devices + ${r.server.username}) and ${r.conf}`);
  console.log(
    `start Mosquitto with it, then the server with --mqtt-url ... --mosquitto-dynsec --mqtt-username '${r.server.username}' and the password in server-mqtt.json`,
  );
}

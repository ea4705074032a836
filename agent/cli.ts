import { Command, InvalidArgumentError } from "commander";
import { EdgeFleetError } from "../shared/errors.js";
import { createLogger } from "../shared/logger.js";
import { loadAgentConfig } from "./config/agent-config.js";
import { runEnrollCli } from "./enroll/enroll-cli.js";
import { startAgent } from "./main.js";
import { createSystemdNotifier, statusLine } from "./service/systemd-notify.js";

const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError("not an integer");
  return n;
};

/** `edge-agent` entry point: flags → config → startAgent; exit code 2 on invalid config. */
export async function runCli(argv: readonly string[]): Promise<void> {
  if (argv[2] === "enroll") return runEnrollCli([argv[0]!, argv[1]!, ...argv.slice(3)]);
  const program = new Command("edge-agent")
    .description("EdgeFleet on-device agent")
    .option("-c, --config <file>", "JSON config file (flags override it)")
    .option("--device-id <id>", "device id (also MQTT client id and username)")
    .option("--mqtt-url <url>", "broker URL, e.g. mqtt://fleet:1883")
    .option("--password <password>", "MQTT password")
    .option("--password-file <file>", "file holding the MQTT password")
    .option("--data-dir <dir>", "state directory (SQLite, bundles, models)")
    .option("--socket-path <path>", "Unix socket for the local API (default {dataDir}/agent.sock)")
    .option("--socket-body-limit <bytes>", "largest request body the socket API accepts (default 16 MiB)", int)
    .option("--root-path <file>", "pinned root.json")
    .option("--profile <id|file>", "device profile id or file (default: auto-detect)")
    .option("--profiles-dir <dir>", "directory of device profiles")
    .option("--topic-prefix <prefix>", "MQTT topic prefix (default fleet/v1)")
    .option("--log-level <level>", "log level")
    .option("--chunk-size <bytes>", "download chunk size", int)
    .option("--window <n>", "chunk requests in flight", int)
    .parse(argv as string[]);
  const o = program.opts();
  let config: Awaited<ReturnType<typeof loadAgentConfig>>;
  try {
    const download =
      o.chunkSize !== undefined || o.window !== undefined
        ? {
            ...(o.chunkSize !== undefined ? { chunkSize: o.chunkSize } : {}),
            ...(o.window !== undefined ? { window: o.window } : {}),
          }
        : undefined;
    config = await loadAgentConfig(o.config, {
      deviceId: o.deviceId,
      mqttUrl: o.mqttUrl,
      password: o.password,
      passwordFile: o.passwordFile,
      dataDir: o.dataDir,
      socketPath: o.socketPath,
      socketBodyLimitBytes: o.socketBodyLimit,
      rootPath: o.rootPath,
      profile: o.profile,
      profilesDir: o.profilesDir,
      topicPrefix: o.topicPrefix,
      logLevel: o.logLevel,
      download,
    });
  } catch (err) {
    process.stderr.write(`edge-agent: ${err instanceof EdgeFleetError ? err.message : String(err)}\n`);
    process.exit(2);
  }
  const log = createLogger({ name: "edge-agent", level: config.logLevel });
  const agent = await startAgent(config, { log });
  // Under systemd (Type=notify): READY=1 only now, when committed models are loaded and the socket
  // API listens (startAgent resolves after both); then watchdog pings from this event loop.
  const systemd = createSystemdNotifier({
    env: process.env,
    pid: process.pid,
    log: log.child({ c: "systemd" }),
    currentStatus: () => statusLine(agent.updater.reported()),
  });
  systemd.ready(statusLine(agent.updater.reported()));
  const stop = (signal: string) => {
    process.stderr.write(`edge-agent: ${signal}, shutting down\n`);
    systemd.stopping();
    agent.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

await runCli(process.argv);

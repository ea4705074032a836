import { monitorEventLoopDelay } from "node:perf_hooks";
import { pino } from "pino";
import { startFleetServer } from "../../../fleet-server/main.js";

/**
 * The fleet server of `fleet-scale`, in its own process (forked with IPC): the simulated devices run
 * in the bench process, so what this process's event loop does is the server's work alone. Messages:
 * `{ cmd: "eld-reset" }` starts a new event-loop-delay window; `{ cmd: "eld" }` answers its p50/p99/max
 * (ms) and the RSS; `{ cmd: "close" }` stops the server. The first message sent is the server's URLs.
 */
const dataDir = process.env.FLEET_SIM_DATA_DIR;
if (!dataDir) throw new Error("FLEET_SIM_DATA_DIR is required");
const mqttUrl = process.env.FLEET_SIM_MQTT_URL;

const server = await startFleetServer({
  dataDir,
  httpPort: 0,
  mqttPort: 0,
  log: pino({ level: process.env.FLEET_SIM_LOG_LEVEL ?? "silent" }),
  ...(mqttUrl ? { mqttUrl } : {}),
});
// 10 ms resolution: the figure is a p99 in the tens of milliseconds, finer sampling only costs CPU.
const eld = monitorEventLoopDelay({ resolution: 10 });
eld.enable();

const ms = (ns: number) => Math.round((ns / 1e6) * 10) / 10;
process.on("message", async (m: { cmd: string }) => {
  if (m.cmd === "eld-reset") {
    eld.reset();
    process.send?.({ ok: true });
  } else if (m.cmd === "eld") {
    process.send?.({
      p50Ms: ms(eld.percentile(50)),
      p99Ms: ms(eld.percentile(99)),
      maxMs: ms(eld.max),
      rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    });
  } else if (m.cmd === "close") {
    // No answer: the parent waits for the exit, so a CPU profile (--cpu-prof) is written before any signal.
    await server.close();
    process.exit(0);
  }
});
process.send?.({
  httpUrl: server.httpUrl,
  mqttUrl: server.mqttUrl,
  adminToken: server.adminToken,
  rootJsonPath: server.rootJsonPath,
  topicPrefix: server.topicPrefix,
});

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { createLogger } from "../../../shared/logger.js";
import { createTopics } from "../../../shared/topics.js";
import { eventually, nextMessage, publish } from "./device-client.js";

const MOSQUITTO = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => existsSync(p));
const topics = createTopics();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

describe.skipIf(!MOSQUITTO)("fleet server with an external broker (Mosquitto)", () => {
  let dir: string;
  let broker: ChildProcess;
  let server: FleetServer;
  let url: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fleet-server-mosq-"));
    const port = await freePort();
    writeFileSync(join(dir, "mosquitto.conf"), `listener ${port} 127.0.0.1\nallow_anonymous true\n`);
    broker = spawn(MOSQUITTO!, ["-c", join(dir, "mosquitto.conf")], { stdio: "ignore" });
    url = `mqtt://127.0.0.1:${port}`;
    // Mosquitto needs a moment to bind; the server's connect is retried until it does.
    server = await eventually(async () => {
      try {
        return await startFleetServer({
          dataDir: join(dir, "data"),
          httpPort: 0,
          mqttUrl: url,
          log: createLogger({ name: "fleet-server-test", level: "silent", pretty: false }),
        });
      } catch {
        return undefined;
      }
    });
  });

  afterAll(async () => {
    await server?.close();
    broker?.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  });

  it("publishes the trust root and ingests device presence through the external broker", async () => {
    expect(server.mqttUrl).toBe(url);
    const headers = { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" };
    const res = await fetch(`${server.httpUrl}/v1/devices`, {
      method: "POST",
      headers,
      body: JSON.stringify({ id: "ext-1" }),
    });
    expect(res.status).toBe(201);

    const client = mqtt.connect(url, { clientId: "ext-1", protocolVersion: 4, reconnectPeriod: 0 });
    try {
      await new Promise<void>((resolve, reject) => {
        client.once("connect", () => resolve());
        client.once("error", reject);
      });
      const root = JSON.parse((await nextMessage(client, topics.trustRoot())).toString("utf8")) as unknown[];
      expect(root).toHaveLength(1);
      await publish(client, topics.device("ext-1", "presence"), "online", true);
      const presence = await eventually(async () => {
        const r = await fetch(`${server.httpUrl}/v1/devices/ext-1`, { headers });
        const body = (await r.json()) as { presence: string };
        return body.presence === "online" ? body.presence : undefined;
      });
      expect(presence).toBe("online");
    } finally {
      client.end(true);
    }
  });
});

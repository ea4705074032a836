import { describe, expect, it } from "vitest";
import { resolveAgentConfig } from "../../../agent/config/agent-config.js";

const base = {
  deviceId: "dev-1",
  mqttUrl: "mqtt://localhost:1883",
  password: "pw",
  dataDir: "/tmp/d",
  rootPath: "/tmp/root.json",
};

describe("agent config", () => {
  it("fills defaults", async () => {
    const c = await resolveAgentConfig(base);
    expect(c.socketPath).toBe("/tmp/d/agent.sock");
    expect(c.topicPrefix).toBe("fleet/v1");
    expect(c.download.chunkSize).toBe(128 * 1024);
    expect(c.profilesDir.endsWith("device-profiles")).toBe(true);
    expect(c.socketBodyLimitBytes).toBe(16 * 1024 * 1024);
  });
  it("takes the socket body cap from config or --socket-body-limit, within bounds (issue 23)", async () => {
    expect((await resolveAgentConfig({ ...base, socketBodyLimitBytes: 64 * 1024 * 1024 })).socketBodyLimitBytes).toBe(
      64 * 1024 * 1024,
    );
    const err = await resolveAgentConfig({ ...base, socketBodyLimitBytes: 1000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "VALIDATION_FAILED" });
    expect((err as Error).message).toContain("socketBodyLimitBytes:");
  });
  it("takes the MQTT link's timing from config, defaults filled in per key (issue 23)", async () => {
    expect((await resolveAgentConfig(base)).mqtt).toEqual({
      keepaliveSec: 60,
      connectTimeoutMs: 10_000,
      reconnect: { baseMs: 500, capMs: 30_000 },
      maxQueuedOffline: 100,
    });
    const c = await resolveAgentConfig({ ...base, mqtt: { keepaliveSec: 20, reconnect: { capMs: 5000 } } });
    expect(c.mqtt).toEqual({
      keepaliveSec: 20,
      connectTimeoutMs: 10_000,
      reconnect: { baseMs: 500, capMs: 5000 },
      maxQueuedOffline: 100,
    });
  });
  it.each([
    ["a keepalive below 5 s", { keepaliveSec: 1 }, "mqtt.keepaliveSec: Too small: expected number to be >=5"],
    ["a keepalive past the 16-bit field", { keepaliveSec: 70_000 }, "mqtt.keepaliveSec: Too big"],
    ["a fractional keepalive", { keepaliveSec: 25.5 }, "mqtt.keepaliveSec: Invalid input: expected int"],
    [
      "a backoff cap under its base",
      { reconnect: { baseMs: 2000, capMs: 1000 } },
      "mqtt.reconnect.capMs: must be >= baseMs (2000)",
    ],
    ["a negative offline queue", { maxQueuedOffline: -1 }, "mqtt.maxQueuedOffline: Too small"],
    ["a key that does not exist", { keepalive: 30 }, 'mqtt: Unrecognized key: "keepalive"'],
    ["a string for a number", { connectTimeoutMs: "10s" }, "mqtt.connectTimeoutMs: Invalid input: expected number"],
  ])("refuses %s with an error naming the key", async (_what, mqtt, message) => {
    const err = await resolveAgentConfig({ ...base, mqtt }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "VALIDATION_FAILED" });
    expect((err as Error).message).toContain(message);
  });
  it("lists every problem", async () => {
    const err = await resolveAgentConfig({
      ...base,
      deviceId: "a/b",
      mqttUrl: "http://x",
      password: undefined,
      bogus: 1,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "VALIDATION_FAILED" });
    expect((err as Error).message).toMatch(/deviceId/);
    expect((err as Error).message).toMatch(/mqttUrl/);
  });
});

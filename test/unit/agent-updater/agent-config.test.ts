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

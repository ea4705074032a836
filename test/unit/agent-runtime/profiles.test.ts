import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { type DeviceFacts, detectProfile } from "../../../agent/profile/detect-profile.js";
import { loadProfiles, resolveProfile } from "../../../agent/profile/load-profiles.js";
import { profileJsonSchema } from "../../../agent/profile/profile-json-schema.js";
import { EdgeFleetError } from "../../../shared/errors.js";

const DIR = fileURLToPath(new URL("../../../device-profiles/", import.meta.url));

describe("device profiles", () => {
  it("every committed profile is valid and ids match file names", async () => {
    const profiles = await loadProfiles(DIR);
    expect(profiles.map((p) => p.id)).toEqual([
      "generic-arm64",
      "generic-x64",
      "raspberry-pi-4",
      "raspberry-pi-5",
      "raspberry-pi-zero-2",
      "x86-gateway",
    ]);
    // Distinct tuning: no two profiles carry identical session options.
    const sessions = new Set(profiles.map((p) => JSON.stringify(p.session)));
    expect(sessions.size).toBe(profiles.length);
    const pi4 = profiles.find((p) => p.id === "raspberry-pi-4")!;
    expect(pi4.session.intraOpNumThreads).toBe(4);
    expect(pi4.session.extra["session.intra_op.allow_spinning"]).toBe("0");
    expect(pi4.preferredVariants).toEqual(["int8", "fp32"]);
    // Issue 13 (docs/operations.md, "Thread spinning"): a small x64 box shares its few cores with the
    // apps and the agent; one thread without spinning measured as fast for small models and 2-3x less CPU.
    const x64 = profiles.find((p) => p.id === "generic-x64")!;
    expect(x64.session.intraOpNumThreads).toBe(1);
    expect(x64.session.extra["session.intra_op.allow_spinning"]).toBe("0");
    // The gateway keeps spinning during a run for latency, but not between runs.
    const gw = profiles.find((p) => p.id === "x86-gateway")!;
    expect(gw.session.extra["session.force_spinning_stop"]).toBe("1");
  });

  it("committed schema.json equals the schema generated from zod", async () => {
    const committed = JSON.parse(await readFile(path.join(DIR, "schema.json"), "utf8"));
    // Compared as data, not bytes: the formatter may re-wrap the file.
    expect(committed).toEqual(JSON.parse(JSON.stringify(profileJsonSchema())));
  });

  it("a bad profile file is VALIDATION_FAILED naming the file", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "ef-profiles-"));
    try {
      await writeFile(path.join(dir, "ok.json"), await readFile(path.join(DIR, "generic-x64.json")));
      await writeFile(path.join(dir, "broken.json"), JSON.stringify({ id: "Bad Id", description: "x" }));
      const err = await loadProfiles(dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EdgeFleetError);
      expect((err as EdgeFleetError).code).toBe("VALIDATION_FAILED");
      expect((err as EdgeFleetError).message).toContain("broken.json");
      await writeFile(path.join(dir, "broken.json"), "{ not json");
      expect(await loadProfiles(dir).catch((e: EdgeFleetError) => e.message)).toContain("broken.json");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("detectProfile", () => {
  const load = () => loadProfiles(DIR);
  const facts = (f: Partial<DeviceFacts>): DeviceFacts => ({ arch: "x64", cores: 2, memoryMB: 2048, ...f });

  it("a Raspberry Pi 4 device-tree string selects raspberry-pi-4", async () => {
    const p = detectProfile(
      facts({ arch: "arm64", cores: 4, memoryMB: 3792, deviceTreeModel: "Raspberry Pi 4 Model B Rev 1.4" }),
      await load(),
    );
    expect(p?.id).toBe("raspberry-pi-4");
  });

  it("a Pi 5 selects raspberry-pi-5; an unknown arm64 board falls back to generic-arm64", async () => {
    const profiles = await load();
    expect(
      detectProfile(facts({ arch: "arm64", cores: 4, deviceTreeModel: "Raspberry Pi 5 Model B Rev 1.0" }), profiles)
        ?.id,
    ).toBe("raspberry-pi-5");
    const zero = detectProfile(facts({ arch: "arm64", deviceTreeModel: "Raspberry Pi Zero 2 W Rev 1.0" }), profiles);
    expect(zero?.id).toBe("raspberry-pi-zero-2");
    expect(zero?.idleUnloadSeconds).toBe(300); // the low-power profile parks idle model hosts
    expect(detectProfile(facts({ arch: "arm64", deviceTreeModel: "Pine64 RockPro64" }), profiles)?.id).toBe(
      "generic-arm64",
    );
  });

  it("x64 with no device tree selects generic-x64; a big x64 box the gateway profile", async () => {
    const profiles = await load();
    expect(detectProfile(facts({}), profiles)?.id).toBe("generic-x64");
    expect(detectProfile(facts({ cores: 8, memoryMB: 16_000 }), profiles)?.id).toBe("x86-gateway");
  });

  it("device-tree match beats arch-only even with a worse priority; priority breaks ties", async () => {
    const profiles = await load();
    const base = profiles.find((p) => p.id === "generic-arm64")!;
    const dt = { ...base, id: "board-a", priority: 5000, match: { ...base.match, deviceTreeModel: ["Board A"] } };
    const archOnly = { ...base, id: "arch-fast", priority: 1 };
    expect(detectProfile(facts({ arch: "arm64", deviceTreeModel: "Vendor Board A v2" }), [archOnly, dt])?.id).toBe(
      "board-a",
    );
    expect(detectProfile(facts({ arch: "arm64" }), [base, archOnly])?.id).toBe("arch-fast");
  });

  it("nothing matches → null; resolveProfile explains and honours overrides", async () => {
    expect(detectProfile(facts({ arch: "riscv64" }), await load())).toBeNull();
    await expect(resolveProfile({ dir: DIR, facts: facts({ arch: "riscv64" }) })).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
    expect((await resolveProfile({ dir: DIR, override: "raspberry-pi-5" })).profile.id).toBe("raspberry-pi-5");
    const byPath = await resolveProfile({ dir: DIR, override: path.join(DIR, "x86-gateway.json") });
    expect(byPath).toMatchObject({ source: "override-file", profile: { id: "x86-gateway" } });
    await expect(resolveProfile({ dir: DIR, override: "nope" })).rejects.toMatchObject({ code: "NOT_FOUND" });
    expect((await resolveProfile({ dir: DIR, facts: facts({}) })).source).toBe("detected");
  });
});

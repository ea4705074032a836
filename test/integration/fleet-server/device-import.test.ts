import { randomBytes, scryptSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceService } from "../../../fleet-server/devices/device-service.js";
import { hashPassword, verifyPassword } from "../../../fleet-server/devices/password.js";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { openDatabase } from "../../../fleet-server/store/db.js";
import { createDeviceRepo } from "../../../fleet-server/store/device-repo.js";
import { ApiClient } from "../../../scripts/fleetctl/api-client.js";
import { parseDeviceCsv } from "../../../scripts/fleetctl/device-csv.js";
import { importDevices } from "../../../scripts/fleetctl/device-import.js";
import { systemClock } from "../../../shared/clock.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { createLogger } from "../../../shared/logger.js";
import { httpApi } from "../../helpers/http-api.js";
import { connectDevice } from "./device-client.js";

const log = createLogger({ name: "device-import-test", level: "silent", pretty: false });
let dir: string;
let server: FleetServer;
let api: ApiClient;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ef-import-"));
  server = await startFleetServer({
    dataDir: join(dir, "server"),
    httpPort: 0,
    mqttPort: 0,
    checkResponses: true,
    log,
  });
  api = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("device CSV (fleetctl devices import)", () => {
  it("reports each bad line with its number and code, and keeps the good ones", () => {
    const csv = [
      "id,profile,tags",
      "a1,generic-x64,site=lab;rack=3",
      '"b,1",,',
      '"c1,generic-x64,',
      "d1,generic-x64",
      "e1,,novalue",
      "",
      "# comment",
      'f1,"generic-x64","k=""q"""',
    ].join("\n");
    const { devices, errors } = parseDeviceCsv(csv);
    expect(devices).toEqual([
      { line: 2, device: { id: "a1", profile: "generic-x64", tags: { site: "lab", rack: "3" } } },
      { line: 3, device: { id: "b,1" } },
      { line: 9, device: { id: "f1", profile: "generic-x64", tags: { k: '"q"' } } },
    ]);
    expect(errors.map((e) => [e.line, e.code])).toEqual([
      [4, "CSV_SYNTAX"],
      [5, "CSV_COLUMNS"],
      [6, "CSV_TAGS"],
    ]);
  });

  it("refuses a file whose header does not name an id column", () => {
    expect(parseDeviceCsv("name,profile\nx,y\n").errors).toEqual([
      expect.objectContaining({ line: 1, code: "CSV_HEADER" }),
    ]);
  });
});

describe("bulk enrollment", () => {
  it("enrolls the valid lines across batches, refuses the rest per line, and leaves no partial device", async () => {
    const existing = await api.enrollDevice({ id: "imp-existing" });
    const csvPath = join(dir, "devices.csv");
    writeFileSync(
      csvPath,
      [
        "id,profile,tags",
        "imp-1,generic-x64,site=a",
        "imp/bad,,", // line 3: the server's id rule (no '/')
        "imp-2,,",
        "imp-1,,", // line 5: twice in the same batch
        "imp-existing,,", // line 6: already enrolled
        "imp-3,,x", // line 7: CSV error, never sent
        "imp-4,,",
        "imp-1,,", // line 9: twice, in a later batch (then it already exists)
      ].join("\n"),
    );
    const out = join(dir, "credentials.csv");
    const r = await importDevices(api, csvPath, out, { batch: 4, progress: false });

    expect(r.enrolled).toBe(3);
    expect(r.errors.map((e) => [e.line, e.code])).toEqual([
      [3, "VALIDATION_FAILED"],
      [5, "CONFLICT"],
      [6, "CONFLICT"],
      [7, "CSV_TAGS"],
      [9, "CONFLICT"],
    ]);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const creds = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .slice(1)
      .map((l) => l.split(","));
    expect(creds.map(([id]) => id)).toEqual(["imp-1", "imp-2", "imp-4"]);

    const { devices } = await api.listDevices();
    expect(devices.map((d) => d.id).sort()).toEqual(["imp-1", "imp-2", "imp-4", "imp-existing"]);
    expect(devices.find((d) => d.id === "imp-1")).toMatchObject({ profile: "generic-x64", tags: { site: "a" } });
    // Each written password is the device's: it connects; the existing device kept its own.
    for (const [id, password] of [...creds, ["imp-existing", existing.password]]) {
      const c = await connectDevice(server.mqttUrl, id!, password!);
      await c.endAsync(true);
    }
    // A second run refuses to overwrite the secrets file.
    await expect(importDevices(api, csvPath, out, { progress: false })).rejects.toThrow(/already exists/);
  });

  it("stores nothing for a device the broker refuses, and the rest of the batch", async () => {
    const db = openDatabase(join(dir, "svc"));
    const repo = createDeviceRepo(db);
    const svc = createDeviceService({
      log,
      clock: systemClock,
      devices: repo,
      admitToBroker: async (id) => {
        if (id === "svc-2") throw new EdgeFleetError("NOT_CONNECTED", "broker unreachable");
      },
    });
    const r = await svc.enrollMany([
      { id: "svc-1" },
      { id: "svc-2" },
      { id: "svc-3", tags: { a: 1 } },
      { id: "svc-4" },
    ]);
    expect(r).toMatchObject({ enrolled: 2, failed: 2 });
    expect(r.results.map((x) => [x.index, x.ok ? "ok" : x.error.code])).toEqual([
      [0, "ok"],
      [1, "NOT_CONNECTED"],
      [2, "VALIDATION_FAILED"],
      [3, "ok"],
    ]);
    expect(repo.list().map((d) => d.id)).toEqual(["svc-1", "svc-4"]);
    db.close();
  });
});

describe("device list paging and filters (GET /v1/devices)", () => {
  it("pages by id with a cursor, filters by profile, tags and presence in SQL, and answers everything without limit", async () => {
    const http = httpApi(server.app, server.adminToken);
    const r = await api.importDevices({
      devices: [
        { id: "pg-a", profile: "rpi4", tags: { site: "north", 'we"i.rd': "x" } },
        { id: "pg-b", profile: "rpi4", tags: { site: "south" } },
        { id: "pg-c", tags: { site: "north" } },
        { id: "pg-d", profile: "rpi4", tags: { site: "north" } },
      ],
    });
    expect(r.enrolled).toBe(4);
    const pages: string[][] = [];
    let after: string | undefined;
    for (;;) {
      const page = await http.ok("listDevices", { query: { limit: 2, profile: "rpi4", ...(after ? { after } : {}) } });
      pages.push(page.devices.map((d) => d.id));
      if (!page.next) break;
      after = page.next;
    }
    expect(pages).toEqual([["pg-a", "pg-b"], ["pg-d"]]);
    const north = await http.ok("listDevices", { query: { limit: 10, tag: ["site=north"], after: "pg" } });
    expect(north.devices.map((d) => d.id)).toEqual(["pg-a", "pg-c", "pg-d"]);
    expect(north.next).toBeNull();
    // Repeated `tag` parameters (the typed helper joins arrays into one value): every pair must match.
    const q = new URLSearchParams([
      ["tag", "site=north"],
      ["tag", 'we"i.rd=x'],
    ]);
    const both = await server.app.inject({
      url: `/v1/devices?${q.toString()}`,
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect((both.json() as { devices: { id: string }[] }).devices.map((d) => d.id)).toEqual(["pg-a"]);
    const online = await http.ok("listDevices", { query: { presence: "online", profile: "rpi4" } });
    expect(online.devices).toEqual([]);
    const all = await http.ok("listDevices");
    expect(all.devices.length).toBe((await api.listDevices()).devices.length);
    expect(all.devices.map((d) => d.id)).toEqual(expect.arrayContaining(["pg-a", "pg-b", "pg-c", "pg-d", "imp-1"]));
    const bad = await http.fail("listDevices", { query: { limit: 0 } as never });
    expect(bad).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
  });
});

describe("device password hashes", () => {
  it("verifies the fast hash and still verifies scrypt hashes stored by older servers", async () => {
    const h = hashPassword("pw-one");
    expect(h.startsWith("sha256$")).toBe(true);
    expect(await verifyPassword("pw-one", h)).toBe(true);
    expect(await verifyPassword("pw-two", h)).toBe(false);
    const salt = randomBytes(16);
    const key = scryptSync("legacy", salt, 32, { N: 16384, r: 8, p: 1 });
    const legacy = `scrypt$16384$8$1$${salt.toString("base64url")}$${key.toString("base64url")}`;
    expect(await verifyPassword("legacy", legacy)).toBe(true);
    expect(await verifyPassword("other", legacy)).toBe(false);
  });
});

import { join } from "node:path";
import fc from "fast-check";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { declaredRoutes } from "../../fleet-server/http/app.js";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import {
  type Answer,
  CALLERS,
  type CallerName,
  expectedVerdict,
  judge,
  keepAlive,
  rawHttp,
  routeMirror,
  spellingMutation,
  spellings,
  type TableRoute,
} from "./route-matrix.js";

/**
 * issue 20 §1: every route of the real server (its own route table, collected by its `onRoute`
 * hook) × every caller × every path spelling gets exactly the treatment its declaration says, or,
 * for a spelling the router does not send to that route, the treatment of wherever it does go
 * (unknown: 401 without a token, 404 with one; never 2xx). In-process with fastify inject, plus the
 * spellings inject normalises away, over real HTTP.
 */
describe("security: route × caller × spelling matrix (issue 20 §1)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: FleetServer;
  let mirror: FastifyInstance;
  let table: readonly TableRoute[];
  const headers: Record<CallerName, Record<string, string>> = {
    none: {},
    device: {},
    viewer: {},
    operator: {},
    admin: {},
  };

  const levelOf = (method: string, route: string | null) =>
    route === null ? null : (table.find((r) => r.method === method && r.url === route)?.access ?? "unlisted");

  beforeAll(async () => {
    tmp = await makeTempDir("ef-matrix-");
    server = await startFleetServer({
      dataDir: join(tmp.path, "server"),
      httpPort: 0,
      mqttPort: 0,
      log: pino({ level: "silent" }),
    });
    const asAdmin = { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" };
    for (const role of ["viewer", "operator", "admin"] as const) {
      const res = await server.app.inject({
        method: "POST",
        url: "/v1/tokens",
        headers: asAdmin,
        payload: { name: `matrix-${role}`, role },
      });
      expect(res.statusCode).toBe(201);
      headers[role] = { authorization: `Bearer ${res.json().token}` };
    }
    const dev = await server.app.inject({
      method: "POST",
      url: "/v1/devices",
      headers: asAdmin,
      payload: { id: "m-dev" },
    });
    expect(dev.statusCode).toBe(201);
    headers.device = { authorization: `Basic ${Buffer.from(`m-dev:${dev.json().password}`).toString("base64")}` };
    table = declaredRoutes(server.app);
    mirror = await routeMirror(table);
  });

  afterAll(async () => {
    await mirror?.close();
    await server?.close();
    await tmp?.cleanup();
  });

  it("the route table: every route declared, the known levels, the plain path of each reaches it", async () => {
    const level = (method: string, url: string) => table.find((r) => r.method === method && r.url === url)?.access;
    expect(level("GET", "/healthz")).toBe("public");
    expect(level("GET", "/metrics")).toBe("public");
    expect(level("POST", "/v1/enroll")).toBe("public");
    expect(level("GET", "/v1/bundles/:sha256")).toBe("device-bundle");
    expect(level("HEAD", "/v1/bundles/:sha256")).toBe("device-bundle");
    expect(level("GET", "/v1/devices")).toBe("viewer");
    expect(level("POST", "/v1/devices")).toBe("operator");
    expect(level("POST", "/v1/rollouts")).toBe("operator");
    for (const [m, u] of [
      ["POST", "/v1/tokens"],
      ["GET", "/v1/tokens"],
      ["DELETE", "/v1/tokens/:id"],
      ["GET", "/v1/audit"],
    ] as const) {
      expect(level(m, u), `${m} ${u}`).toBe("admin");
    }
    // Governance (issue 21): reviews and stage moves are the operators', the approval policy the admin's.
    for (const [m, u, a] of [
      ["GET", "/v1/models/:name/versions/:version/governance", "viewer"],
      ["POST", "/v1/models/:name/versions/:version/stage", "operator"],
      ["POST", "/v1/models/:name/versions/:version/approvals", "operator"],
      ["POST", "/v1/models/:name/versions/:version/refusals", "operator"],
      ["GET", "/v1/models/:name/approval-policy", "viewer"],
      ["POST", "/v1/models/:name/approval-policy", "admin"],
      ["GET", "/v1/model-lifecycle/stale-devices", "viewer"],
    ] as const) {
      expect(level(m, u), `${m} ${u}`).toBe(a);
    }
    // Nothing mutating is open to a viewer (the onRoute check refuses it, so this can only hold).
    expect(table.filter((r) => !["GET", "HEAD"].includes(r.method) && r.access === "viewer")).toEqual([]);
    for (const r of table) {
      expect(server.app.hasRoute({ method: r.method as "GET", url: r.url }), `${r.method} ${r.url}`).toBe(true);
      const path = spellings(r.url)[0]!.path;
      const m = await mirror.inject({ method: r.method as "GET", url: path });
      expect(m.headers["x-route"], `${r.method} ${path}`).toBe(r.url);
    }
  });

  it("every route × caller × spelling gets its declared treatment (inject)", async () => {
    let requests = 0;
    let spellingCount = 0;
    const reached = { own: 0, other: 0, none: 0 };
    for (const r of table) {
      for (const s of spellings(r.url)) {
        spellingCount++;
        const mirrored = (await mirror.inject({ method: r.method as "GET", url: s.path })).headers["x-route"];
        const matched = typeof mirrored === "string" && mirrored !== "" ? mirrored : null;
        reached[matched === r.url ? "own" : matched === null ? "none" : "other"]++;
        const level = levelOf(r.method, matched);
        expect(level, `${r.method} ${s.path} reached an unlisted route`).not.toBe("unlisted");
        for (const caller of CALLERS) {
          const res = await server.app.inject({ method: r.method as "GET", url: s.path, headers: headers[caller] });
          const verdict = expectedVerdict(level === "unlisted" ? null : level, caller);
          const a: Answer = { status: res.statusCode, body: res.body };
          const where = `${r.method} ${s.path} (${s.name}, route ${matched}, ${level}) as ${caller} → ${a.status} ${a.body.slice(0, 160)}`;
          judge(a, r.method, verdict, where, level === "device-bundle" && caller === "device");
          if (matched === null) expect(a.status, where).toBeGreaterThanOrEqual(400);
          requests++;
        }
      }
    }
    // The figure for the report (issue 20 "What must be shown": the matrix size).
    console.log(
      `route matrix (inject): ${table.length} method×route entries, ${spellingCount} spellings, ` +
        `${CALLERS.length} callers = ${requests} requests; spellings routed to their own route ${reached.own}, ` +
        `to another route ${reached.other}, to none ${reached.none}`,
    );
    expect(table.length).toBeGreaterThanOrEqual(40);
    expect(requests).toBe(spellingCount * CALLERS.length);
    // The spellings must exercise both sides: decoded ones reach the route, the others do not.
    expect(reached.own).toBeGreaterThan(table.length);
    expect(reached.none).toBeGreaterThan(table.length);
  });

  it("over real HTTP: the issue's bypasses and the dot-segment spellings inject would normalise", async () => {
    await mirror.listen({ port: 0, host: "127.0.0.1" });
    const base = new URL(server.httpUrl);
    const mirrorAddr = mirror.server.address();
    const mirrorBase = new URL(
      `http://127.0.0.1:${typeof mirrorAddr === "object" && mirrorAddr ? mirrorAddr.port : 0}`,
    );
    const agent = keepAlive();
    const mirrorAgent = keepAlive();
    try {
      // The reproductions of issue 20 §1, byte for byte.
      const json = { "content-type": "application/json" };
      expect((await rawHttp(agent, base, "GET", "/%761/devices", {})).status).toBe(401);
      expect((await rawHttp(agent, base, "POST", "/%761/enrollment-tokens", json)).status).toBe(401);
      expect((await rawHttp(agent, base, "POST", "/v1/%74okens", { ...headers.operator, ...json })).status).toBe(403);
      expect((await rawHttp(agent, base, "GET", "/v1/%61udit", headers.viewer)).status).toBe(403);
      expect((await rawHttp(agent, base, "GET", "/v1/%61udit", headers.admin)).status).toBe(200);
      let requests = 0;
      for (const r of table) {
        for (const s of spellings(r.url).filter((x) =>
          ["dot-segment", "dotdot-segment", "pct-letter"].includes(x.name),
        )) {
          const mirrored = (await rawHttp(mirrorAgent, mirrorBase, r.method, s.path, {})).headers["x-route"];
          const matched = typeof mirrored === "string" && mirrored !== "" ? mirrored : null;
          const level = levelOf(r.method, matched);
          for (const caller of CALLERS) {
            const a = await rawHttp(agent, base, r.method, s.path, headers[caller]);
            const where = `HTTP ${r.method} ${s.path} (route ${matched}) as ${caller} → ${a.status} ${a.body.slice(0, 160)}`;
            judge(
              a,
              r.method,
              expectedVerdict(level === "unlisted" ? null : level, caller),
              where,
              caller === "device",
            );
            requests++;
          }
        }
      }
      console.log(`route matrix (real HTTP): ${requests} requests`);
    } finally {
      agent.destroy();
      mirrorAgent.destroy();
    }
  });

  it("fuzz: random spellings of every route, random callers (fast-check, fixed seed)", async () => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: table.length - 1 }),
        fc.array(spellingMutation, { minLength: 1, maxLength: 4 }),
        fc.constantFrom(...CALLERS),
        async (i, mutations, caller) => {
          const r = table[i]!;
          const path = mutations.reduce((p, m) => m(p), spellings(r.url)[0]!.path);
          const m = await mirror.inject({ method: r.method as "GET", url: path });
          const res = await server.app.inject({ method: r.method as "GET", url: path, headers: headers[caller] });
          const where = `${r.method} ${path} as ${caller} → ${res.statusCode} ${res.body.slice(0, 160)}`;
          runs++;
          if (m.statusCode === 400) {
            // Not a URL the router can decode (`%zz`): refused before any route, never served.
            expect(res.statusCode, where).toBe(400);
            return;
          }
          const mirrored = m.headers["x-route"];
          const matched = typeof mirrored === "string" && mirrored !== "" ? mirrored : null;
          const level = levelOf(r.method, matched);
          expect(level, where).not.toBe("unlisted");
          const verdict = expectedVerdict(level === "unlisted" ? null : level, caller);
          judge({ status: res.statusCode, body: res.body }, r.method, verdict, where, caller === "device");
        },
      ),
      { numRuns: 600, seed: 2020 },
    );
    expect(runs).toBeGreaterThanOrEqual(600);
  });
});

import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { declaredRoutes } from "../../../fleet-server/http/app.js";
import { responseProblem } from "../../../fleet-server/http/contract-route.js";
import { openApiDocument } from "../../../fleet-server/http/openapi.js";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { HTTP_ROUTES } from "../../../shared/http/routes.js";
import { type HttpApi, httpApi } from "../../helpers/http-api.js";
import { makeTempDir } from "../../helpers/temp-dir.js";

/**
 * issue 23 "One HTTP contract": every route the server registers implements a contract from
 * shared/http, `GET /v1/openapi.json` is a structurally valid OpenAPI 3.1 document listing every
 * route with its declared access, and what the server answers matches both the zod contract and
 * the JSON Schema the document publishes for it. In-process (fastify inject).
 */

type Json = Record<string, unknown>;

/** Resolves a local JSON pointer (`#/components/schemas/X`) in `doc`, or undefined. */
function resolvePointer(doc: Json, ref: string): unknown {
  if (!ref.startsWith("#/")) return undefined;
  let at: unknown = doc;
  for (const raw of ref.slice(2).split("/")) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (typeof at !== "object" || at === null || !(key in at)) return undefined;
    at = (at as Json)[key];
  }
  return at;
}

function refsIn(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) refsIn(v, out);
  else if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (k === "$ref" && typeof v === "string") out.push(v);
      else refsIn(v, out);
    }
  }
  return out;
}

const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

describe("HTTP contract and OpenAPI document (issue 23)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: FleetServer;
  let api: HttpApi;
  let doc: Json;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-contract-");
    server = await startFleetServer({
      dataDir: join(tmp.path, "server"),
      httpPort: 0,
      mqttPort: 0,
      checkResponses: true,
      log: pino({ level: "silent" }),
    });
    api = httpApi(server.app, server.adminToken);
    doc = (await api.ok("getOpenApi")) as Json;
  });
  afterAll(async () => {
    await server?.close();
    await tmp?.cleanup();
  });

  it("every registered route implements a contract, and every contract is registered", () => {
    const table = declaredRoutes(server.app);
    expect(table.filter((r) => r.operation === null)).toEqual([]);
    const registered = new Set(table.map((r) => r.operation));
    expect(Object.keys(HTTP_ROUTES).filter((op) => !registered.has(op))).toEqual([]);
    for (const r of table) expect(HTTP_ROUTES[r.operation as keyof typeof HTTP_ROUTES].path).toBe(r.url);
  });

  it("GET /v1/openapi.json is a structurally valid OpenAPI 3.1 document", () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    const info = doc.info as Json;
    expect(typeof info.title).toBe("string");
    expect(typeof info.version).toBe("string");
    const paths = doc.paths as Record<string, Json>;
    expect(Object.keys(paths).length).toBeGreaterThan(0);
    const operationIds = new Set<string>();
    const schemes = ((doc.components as Json).securitySchemes ?? {}) as Json;
    for (const [path, item] of Object.entries(paths)) {
      expect(path.startsWith("/")).toBe(true);
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(item)) {
        expect(HTTP_METHODS).toContain(method);
        const o = op as Json;
        expect(typeof o.operationId).toBe("string");
        expect(operationIds.has(o.operationId as string)).toBe(false);
        operationIds.add(o.operationId as string);
        // Every operation has responses, each with a description (OpenAPI: required).
        const responses = o.responses as Record<string, Json>;
        expect(Object.keys(responses).length).toBeGreaterThan(0);
        for (const [status, res] of Object.entries(responses)) {
          expect(status).toMatch(/^(default|[1-5](\d\d|XX))$/);
          expect(typeof res.description).toBe("string");
        }
        // Every {param} of the path is declared as a required path parameter, and no other.
        const params = ((o.parameters ?? []) as Json[]).filter((p) => p.in === "path");
        expect(params.map((p) => p.name).sort()).toEqual([...templated].sort());
        for (const p of params) expect(p.required).toBe(true);
        // Security requirements name declared schemes only.
        for (const req of (o.security ?? []) as Json[]) {
          for (const scheme of Object.keys(req)) expect(schemes).toHaveProperty(scheme);
        }
      }
    }
    // Every $ref resolves.
    const unresolved = refsIn(doc).filter((r) => resolvePointer(doc, r) === undefined);
    expect(unresolved).toEqual([]);
    expect(refsIn(doc).length).toBeGreaterThan(20);
  });

  it("the document lists every route of the server's route table with its access as the security requirement", () => {
    const paths = doc.paths as Record<string, Record<string, Json>>;
    const table = declaredRoutes(server.app);
    expect(table.length).toBeGreaterThan(40);
    for (const r of table) {
      const op = paths[r.url.replace(/:([A-Za-z0-9_]+)/g, "{$1}")]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${r.url}`).toBeDefined();
      expect(op!["x-edgefleet-access"]).toBe(r.access);
      const security = op!.security as Json[];
      if (r.access === "public") expect(security).toEqual([]);
      else if (r.access === "device-bundle") expect(security).toContainEqual({ deviceCredentials: [] });
      else expect(security).toEqual([{ bearerToken: [r.access] }]);
    }
    // And nothing else: every documented operation is a registered route.
    const documented = Object.entries(paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m} ${p}`));
    expect(documented.length).toBe(table.length);
  });

  it("every component schema is valid JSON Schema 2020-12, and real answers validate against the published ones", async () => {
    const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
    ajv.addSchema({ components: doc.components }, "doc");
    const schemas = (doc.components as Json).schemas as Json;
    for (const name of Object.keys(schemas))
      expect(() => ajv.getSchema(`doc#/components/schemas/${name}`)).not.toThrow();
    const check = (name: string, value: unknown) => {
      const validate = ajv.getSchema(`doc#/components/schemas/${name}`)!;
      expect(validate(value), `${name}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    };
    // The published schemas are not vacuous: a wrong body fails them.
    const models = ajv.getSchema("doc#/components/schemas/ListModelsResponse200")!;
    expect(models({ models: [{ name: "m", versions: "2", latestVersion: "1.0.0", latestReleaseCounter: 1 }] })).toBe(
      false,
    );
    expect(models({})).toBe(false);
    check("LivenessResponse200", await api.ok("liveness"));
    check("ListModelsResponse200", await api.ok("listModels"));
    const creds = await api.ok("enrollDevice", { body: { id: "contract-dev", tags: { site: "lab" } } }, 201);
    check("EnrollDeviceResponse201", creds);
    check("ListDevicesResponse200", await api.ok("listDevices"));
    check("GetDeviceResponse200", await api.ok("getDevice", { params: { id: "contract-dev" } }));
    check("ListTokensResponse200", await api.ok("listTokens"));
    check("ListAuditResponse200", await api.ok("listAudit", { query: { limit: 5 } }));
    const missing = await api.fail("getRollout", { params: { id: "r-none" } });
    expect(missing).toMatchObject({ status: 404, code: "NOT_FOUND" });
    check("ErrorResponse", { error: { code: missing.code, message: missing.message } });
  });

  it("the document describes each kind of rollout history event and its detail", () => {
    const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
    ajv.addSchema({ components: doc.components }, "doc");
    const event = ajv.getSchema("doc#/components/schemas/RolloutEvent")!;
    const at = { seq: 1, ts: "2026-01-01T00:00:00.000Z" };
    expect(event({ ...at, type: "paused", detail: { stage: 0, by: "operator" } })).toBe(true);
    expect(event({ ...at, type: "paused", detail: { stage: 0, reason: "gate failedPercent breached" } })).toBe(true);
    expect(
      event({
        ...at,
        type: "promoted",
        detail: { stage: 2, from: { stage: 0, servingMode: "shadow" }, acknowledged: 0 },
      }),
    ).toBe(true);
    // A detail of another kind, or an unknown kind, is not a history event.
    expect(event({ ...at, type: "stage-advanced", detail: { by: "operator" } })).toBe(false);
    expect(event({ ...at, type: "exploded", detail: {} })).toBe(false);
  });

  it("the OpenAPI document needs a token like every other read (viewer)", async () => {
    expect(await api.fail("getOpenApi", { token: null })).toMatchObject({ status: 401, code: "UNAUTHORIZED" });
    const viewer = await api.ok("createToken", { body: { name: "contract-viewer", role: "viewer" } }, 201);
    expect((await api.call("getOpenApi", { token: viewer.token })).status).toBe(200);
  });

  it("a route without a contract cannot be documented: the generator refuses it by name", () => {
    const routes = [{ method: "GET", url: "/v1/undocumented", access: "viewer" as const, operation: null }];
    expect(() => openApiDocument({ routes, contracts: HTTP_ROUTES, version: "1.0.0" })).toThrow(
      /GET \/v1\/undocumented implements no contract/,
    );
  });

  it("the response check names the field that drifted from the contract", () => {
    const rollout = HTTP_ROUTES.listModels;
    expect(responseProblem(rollout, 200, { models: [] })).toBeNull();
    expect(responseProblem(rollout, 200, { models: [{ name: "m", versions: "2" }] })).toMatch(
      /listModels 200\.models\[0\]\.versions: /,
    );
    // A success status the contract does not list is a mismatch; errors must be the error envelope.
    expect(responseProblem(rollout, 202, { models: [] })).toMatch(/no JSON response for this status/);
    expect(responseProblem(rollout, 404, { error: { code: "NOT_FOUND", message: "x" } })).toBeNull();
    expect(responseProblem(rollout, 404, { message: "x" })).toMatch(/listModels 404\.error/);
    // The not-found handler (no contract) answers errors only.
    expect(responseProblem(undefined, 404, { error: { code: "NOT_FOUND", message: "no route" } })).toBeNull();
  });
});

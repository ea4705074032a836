import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { makeTempDir } from "../helpers/temp-dir.js";

// biome-ignore lint/suspicious/noExplicitAny: response bodies are asserted field by field
type Any = any;

/**
 * API attacks (issue 7): no token, a viewer trying to mutate, an oversize body, malformed JSON.
 * Each gets a clear 4xx with a stable code, changes nothing (device list identical), and is
 * recorded in the append-only audit log.
 */
describe("security: the HTTP API refuses and audits", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: FleetServer;
  let viewer: string;
  let operator: string;

  async function call(
    method: string,
    path: string,
    token: string | null,
    body?: string | Buffer,
    type = "application/json",
  ) {
    const res = await fetch(`${server.httpUrl}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { "content-type": type } : {}),
      },
      ...(body !== undefined ? { body } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, Any>) : {} };
  }
  const admin = () => server.adminToken;
  const devices = async () => (await call("GET", "/v1/devices", admin())).json.devices as { id: string }[];
  const auditTail = async () => (await call("GET", "/v1/audit?limit=1000", admin())).json.entries as Any[];

  /** Runs `attack`, then checks nothing changed and the audit log gained the refusal. */
  async function refused(
    attack: () => Promise<{ status: number; json: Record<string, Any> }>,
    status: number,
    code: string,
  ) {
    const before = await devices();
    const auditBefore = (await auditTail()).length;
    const res = await attack();
    expect(res.status).toBe(status);
    expect(res.json.error?.code).toBe(code);
    expect(typeof res.json.error?.message).toBe("string");
    expect(await devices()).toEqual(before);
    const added = (await auditTail()).slice(auditBefore);
    return { res, added };
  }

  beforeAll(async () => {
    tmp = await makeTempDir("ef-api-");
    server = await startFleetServer({
      dataDir: join(tmp.path, "server"),
      httpPort: 0,
      mqttPort: 0,
      log: pino({ level: "silent" }),
    });
    viewer = (await call("POST", "/v1/tokens", admin(), JSON.stringify({ name: "dash", role: "viewer" }))).json.token;
    operator = (await call("POST", "/v1/tokens", admin(), JSON.stringify({ name: "ci", role: "operator" }))).json.token;
    expect(viewer).toMatch(/^eft_/);
    expect((await call("POST", "/v1/devices", admin(), JSON.stringify({ id: "api-d1" }))).status).toBe(201);
  });

  afterAll(async () => {
    await server?.close();
    await tmp?.cleanup();
  });

  it("no token → 401 UNAUTHORIZED with WWW-Authenticate; audited as anonymous", async () => {
    const { added } = await refused(
      () => call("POST", "/v1/devices", null, JSON.stringify({ id: "api-x1" })),
      401,
      "UNAUTHORIZED",
    );
    expect(added).toMatchObject([
      { actor: "anonymous", method: "POST", path: "/v1/devices", status: 401, errorCode: "UNAUTHORIZED" },
    ]);
    expect((await call("GET", "/v1/devices", null)).status).toBe(401);
    expect((await call("GET", "/v1/devices", "eft_not-a-real-token")).status).toBe(401);
  });

  it("viewer trying to mutate → 403 FORBIDDEN; reading works; admin areas closed", async () => {
    const { added } = await refused(
      () => call("POST", "/v1/devices", viewer, JSON.stringify({ id: "api-x2" })),
      403,
      "FORBIDDEN",
    );
    expect(added[0]).toMatchObject({ role: "viewer", status: 403, errorCode: "FORBIDDEN" });
    await refused(() => call("POST", "/v1/devices/api-d1/revoke", viewer, "{}"), 403, "FORBIDDEN");
    expect((await call("GET", "/v1/devices", viewer)).status).toBe(200);
    expect((await call("GET", "/v1/audit", viewer)).status).toBe(403);
    expect((await call("GET", "/v1/audit", operator)).status).toBe(403);
    await refused(
      () => call("POST", "/v1/tokens", operator, JSON.stringify({ name: "x", role: "admin" })),
      403,
      "FORBIDDEN",
    );
  });

  it("oversize body → 413 PAYLOAD_TOO_LARGE", async () => {
    const huge = JSON.stringify({ id: "api-x3", profile: "x".repeat(9 * 1024 * 1024) });
    const { added } = await refused(() => call("POST", "/v1/devices", operator, huge), 413, "PAYLOAD_TOO_LARGE");
    expect(added[0]).toMatchObject({ status: 413 });
  });

  it("malformed JSON → 400 BAD_REQUEST; schema violation → 400 VALIDATION_FAILED", async () => {
    await refused(() => call("POST", "/v1/devices", operator, '{"id": "api-x4",'), 400, "BAD_REQUEST");
    await refused(
      () => call("POST", "/v1/devices", operator, JSON.stringify({ id: "a/b#" })),
      400,
      "VALIDATION_FAILED",
    );
    await refused(() => call("POST", "/v1/devices", operator, "id=x", "text/plain"), 400, "BAD_REQUEST");
  });

  it("the audit log records who changed what, is append-only and admin-readable", async () => {
    expect((await call("POST", "/v1/devices", operator, JSON.stringify({ id: "api-d2" }))).status).toBe(201);
    const entries = await auditTail();
    const last = entries.at(-1);
    expect(last).toMatchObject({ method: "POST", path: "/v1/devices", status: 201, role: "operator" });
    expect(last.actor).toMatch(/^token:[0-9a-f]{16}$/);
    // Sequence numbers strictly increase: nothing was removed or reordered.
    const seqs = entries.map((e) => e.seq as number);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(entries.every((e) => e.actor !== undefined && typeof e.at === "string")).toBe(true);
  });

  it("a revoked token stops working at once", async () => {
    const t = (await call("POST", "/v1/tokens", admin(), JSON.stringify({ name: "tmp", role: "viewer" }))).json;
    expect((await call("GET", "/v1/devices", t.token)).status).toBe(200);
    expect((await call("DELETE", `/v1/tokens/${t.id}`, admin())).status).toBe(200);
    await refused(() => call("GET", "/v1/devices", t.token), 401, "UNAUTHORIZED");
  });

  it("a one-time enrollment token is spent once; a second use and a wrong device id are refused", async () => {
    const grant = (await call("POST", "/v1/enrollment-tokens", operator, JSON.stringify({ deviceId: "api-e1" }))).json;
    const wrong = await call("POST", "/v1/enroll", null, JSON.stringify({ token: grant.token, id: "api-e2" }));
    expect(wrong.status).toBe(403);
    // issue 20 §5: the refusal did not spend the token, so the right request still enrolls...
    const right = await call("POST", "/v1/enroll", null, JSON.stringify({ token: grant.token, id: "api-e1" }));
    expect(right.status).toBe(201);
    // ...and only that one spends it.
    const reuse = await call("POST", "/v1/enroll", null, JSON.stringify({ token: grant.token, id: "api-e1" }));
    expect(reuse.status).toBe(401);
    const fresh = (await call("POST", "/v1/enrollment-tokens", operator, JSON.stringify({}))).json;
    const ok = await call("POST", "/v1/enroll", null, JSON.stringify({ token: fresh.token, id: "api-e3" }));
    expect(ok.status).toBe(201);
    expect(ok.json.password).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    const again = await call("POST", "/v1/enroll", null, JSON.stringify({ token: fresh.token, id: "api-e4" }));
    expect(again.status).toBe(401);
    expect((await devices()).map((d) => d.id).sort()).toEqual(["api-d1", "api-d2", "api-e1", "api-e3"]);
  });

  it("issue 20 §5: an unbound token naming an existing device → 409 and the token stays unspent", async () => {
    const grant = (await call("POST", "/v1/enrollment-tokens", operator, "{}")).json;
    const taken = await call("POST", "/v1/enroll", null, JSON.stringify({ token: grant.token, id: "api-d1" }));
    expect(taken.status).toBe(409);
    expect(taken.json.error.code).toBe("CONFLICT");
    const ok = await call("POST", "/v1/enroll", null, JSON.stringify({ token: grant.token, id: "api-e5" }));
    expect(ok.status).toBe(201);
    const again = await call("POST", "/v1/enroll", null, JSON.stringify({ token: grant.token, id: "api-e6" }));
    expect(again.status).toBe(401);
    // An invalid token never reveals whether a device id exists (401 before the 409 check).
    const probe = await call(
      "POST",
      "/v1/enroll",
      null,
      JSON.stringify({ token: "efe_not-a-real-token", id: "api-d1" }),
    );
    expect(probe.status).toBe(401);
  });

  it("issue 20 §5: two tokens racing for one new id → one 201, one 409 whose token stays usable", async () => {
    const a = (await call("POST", "/v1/enrollment-tokens", operator, "{}")).json.token as string;
    const b = (await call("POST", "/v1/enrollment-tokens", operator, "{}")).json.token as string;
    const [ra, rb] = await Promise.all([
      call("POST", "/v1/enroll", null, JSON.stringify({ token: a, id: "api-race" })),
      call("POST", "/v1/enroll", null, JSON.stringify({ token: b, id: "api-race" })),
    ]);
    expect([ra.status, rb.status].sort()).toEqual([201, 409]);
    const loser = ra.status === 409 ? a : b;
    const retry = await call("POST", "/v1/enroll", null, JSON.stringify({ token: loser, id: "api-race-2" }));
    expect(retry.status).toBe(201);
  });

  /**
   * issue 20 §1: Fastify percent-decodes the path before it picks a route, so any check on the raw
   * URL string can be walked around. These are the reproductions, over real HTTP.
   */
  describe("issue 20 §1: authorization follows the matched route, not the URL string", () => {
    it("no token on a percent-encoded /v1 → 401, nothing created, refusal audited with route and raw URL", async () => {
      expect((await call("GET", "/%761/devices", null)).status).toBe(401);
      const { added } = await refused(
        () => call("POST", "/%761/devices", null, JSON.stringify({ id: "intruder-1", profile: "generic-x64" })),
        401,
        "UNAUTHORIZED",
      );
      expect(added).toMatchObject([
        { actor: "anonymous", method: "POST", route: "/v1/devices", path: "/%761/devices", status: 401 },
      ]);
      await refused(() => call("POST", "/%761/enrollment-tokens", null, "{}"), 401, "UNAUTHORIZED");
    });

    it("operator cannot mint an admin token via /v1/%74okens; viewer cannot read /v1/%61udit", async () => {
      const before = (await call("GET", "/v1/tokens", admin())).json.tokens.length;
      await refused(
        () => call("POST", "/v1/%74okens", operator, JSON.stringify({ role: "admin", name: "x" })),
        403,
        "FORBIDDEN",
      );
      expect((await call("GET", "/v1/tokens", admin())).json.tokens.length).toBe(before);
      expect((await call("GET", "/v1/%61udit", viewer)).status).toBe(403);
      expect((await call("GET", "/v1/%61udit", operator)).status).toBe(403);
      expect((await call("GET", "/v1/%61udit", admin())).status).toBe(200);
    });

    it("an unknown path is 401 without a token and 404 only with one", async () => {
      expect((await call("GET", "/v1/no-such-thing", null)).status).toBe(401);
      expect((await call("GET", "/no-such-thing", null)).status).toBe(401);
      expect((await call("GET", "/v1/no-such-thing", viewer)).status).toBe(404);
      expect((await call("GET", "/healthz", null)).status).toBe(200);
    });
  });
});

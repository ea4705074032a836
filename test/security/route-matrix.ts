import { Agent, request as httpRequest } from "node:http";
import fc from "fast-check";
import Fastify, { type FastifyInstance } from "fastify";
import { expect } from "vitest";
import type { RouteAccess } from "../../fleet-server/http/route-access.js";

/**
 * The route × caller × path-spelling matrix of issue 20 §1, as helpers shared by the matrix test and
 * the request-path fuzzing. Expectations come from each route's own declaration (the app's route
 * table) and from an independent table of what each level allows (`expectedVerdict`), never from
 * the URL: which route a spelling reaches is asked of a mirror Fastify app holding the same routes.
 */

export const CALLERS = ["none", "device", "viewer", "operator", "admin"] as const;
export type CallerName = (typeof CALLERS)[number];

/** What the auth layer must do: let through, 401, 403, or (no route matched, caller has a token) 404. */
export type Verdict = "ok" | "unauthenticated" | "forbidden" | "not-found";

const RANK = { viewer: 1, operator: 2, admin: 3 } as const;
const NEEDS: Record<Exclude<RouteAccess, "public">, number> = { "device-bundle": 1, viewer: 1, operator: 2, admin: 3 };

/** The spec, written out independently of the server's `decide`. `null` = no route matched. */
export function expectedVerdict(level: RouteAccess | null, caller: CallerName): Verdict {
  if (level === null) return caller === "none" || caller === "device" ? "unauthenticated" : "not-found";
  if (level === "public") return "ok";
  if (caller === "none") return "unauthenticated";
  if (caller === "device") return level === "device-bundle" ? "ok" : "unauthenticated";
  return RANK[caller] >= NEEDS[level] ? "ok" : "forbidden";
}

/** Harmless values for route parameters: nothing they name exists, so handlers only refuse. */
const PARAM_VALUES: Record<string, string> = {
  sha256: "0".repeat(64),
  name: "matrix-model",
  version: "1.0.0",
  variant: "fp32",
};

export function concretePath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, (_m, p: string) => PARAM_VALUES[p] ?? "matrix0");
}

const pct = (ch: string, upper: boolean) => {
  const hex = ch.charCodeAt(0).toString(16).padStart(2, "0");
  return `%${upper ? hex.toUpperCase() : hex}`;
};

/**
 * The spellings of issue 20 §1 for one route: plain, a letter percent-encoded (`/%761/...`), lower-
 * and upper-case hex (a letter whose code has a hex letter), `%2F` for a slash, a double slash, a
 * trailing slash, `;x`, `/./` and `/../`. Letters are only taken from static segments, so the
 * parameters stay what they were. Identical spellings are dropped.
 */
export function spellings(url: string): { name: string; path: string }[] {
  const segs = url.split("/").slice(1);
  const concrete = segs.map((s) => (s.startsWith(":") ? concretePath(s) : s));
  const join = (parts: string[]) => `/${parts.join("/")}`;
  const encodeAt = (pick: (ch: string) => boolean, upper: boolean): string | null => {
    for (const [i, seg] of segs.entries()) {
      if (seg.startsWith(":")) continue;
      const at = [...seg].findIndex(pick);
      if (at === -1) continue;
      const copy = [...concrete];
      copy[i] = seg.slice(0, at) + pct(seg[at]!, upper) + seg.slice(at + 1);
      return join(copy);
    }
    return null;
  };
  const hasHexLetter = (ch: string) => /[a-z]/i.test(ch) && /[a-f]/.test(ch.charCodeAt(0).toString(16));
  const plain = join(concrete);
  const [first, ...rest] = concrete;
  const tail = rest.length > 0 ? `/${rest.join("/")}` : "";
  const out: { name: string; path: string | null }[] = [
    { name: "plain", path: plain },
    { name: "pct-letter", path: encodeAt((c) => /[a-z]/i.test(c), false) },
    { name: "hex-lower", path: encodeAt(hasHexLetter, false) },
    { name: "hex-upper", path: encodeAt(hasHexLetter, true) },
    { name: "pct-2F-slash", path: rest.length > 0 ? `/${first}%2F${rest.join("/")}` : `/%2F${first}` },
    { name: "double-slash", path: rest.length > 0 ? `/${first}/${tail}` : `//${first}` },
    { name: "trailing-slash", path: `${plain}/` },
    { name: "semicolon", path: `${plain};x` },
    { name: "dot-segment", path: `/${first}/.${tail}` },
    { name: "dotdot-segment", path: `/${first}/x/..${tail}` },
  ];
  const seen = new Set<string>();
  return out.flatMap((s) => {
    if (s.path === null || seen.has(s.path)) return [];
    seen.add(s.path);
    return [{ name: s.name, path: s.path }];
  });
}

export interface TableRoute {
  method: string;
  url: string;
  access: RouteAccess;
}

/**
 * A Fastify app with the same routes (same methods, same patterns, default router options like the
 * server's) whose handlers only say which route matched: the router decides, not the test.
 */
export async function routeMirror(routes: readonly TableRoute[]): Promise<FastifyInstance> {
  const mirror = Fastify({ logger: false });
  for (const r of routes) {
    mirror.route({
      method: r.method as "GET",
      url: r.url,
      exposeHeadRoute: false,
      handler: async (req, reply) => reply.header("x-route", req.routeOptions.url).send(""),
    });
  }
  mirror.setNotFoundHandler(async (_req, reply) => reply.header("x-route", "").send(""));
  await mirror.ready();
  return mirror;
}

export interface Answer {
  status: number;
  body: string;
}

/** One request over real HTTP with the path byte for byte (fetch would normalise `/./`). */
export function rawHttp(
  agent: Agent,
  base: URL,
  method: string,
  path: string,
  headers: Record<string, string>,
): Promise<Answer & { headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ agent, host: base.hostname, port: base.port, method, path, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

export const keepAlive = () => new Agent({ keepAlive: true, maxSockets: 4 });

function errorOf(a: Answer): { code?: string; message?: string; details?: { access?: string } } {
  try {
    return (JSON.parse(a.body) as { error?: Record<string, never> }).error ?? {};
  } catch {
    return {};
  }
}

/**
 * Checks one answer against the verdict. HEAD answers carry no body, so for them only the status
 * class is checked (the GET of the same route, same declaration, is checked precisely). A handler
 * may still refuse an allowed caller for its own reasons (400, handler 404, a device asking for a
 * bundle it is not assigned: 403 without `details.access`), which is not an authorization decision.
 */
export function judge(a: Answer, method: string, verdict: Verdict, where: string, handlerMayForbid = false): void {
  const e = errorOf(a);
  const head = method === "HEAD";
  switch (verdict) {
    case "unauthenticated":
      expect(a.status, where).toBe(401);
      if (!head) expect(e.code, where).toBe("UNAUTHORIZED");
      return;
    case "forbidden":
      expect(a.status, where).toBe(403);
      if (!head) expect(e.details?.access, where).toBeDefined();
      return;
    case "not-found":
      expect(a.status, where).toBe(404);
      if (!head) expect(e.message, where).toMatch(/^no route /);
      return;
    case "ok":
      expect(a.status, where).not.toBe(401);
      if (head && !handlerMayForbid) expect(a.status, where).not.toBe(403);
      if (!head) {
        expect(a.status === 403 && e.details?.access !== undefined, `${where}: refused by the auth layer`).toBe(false);
        expect(a.status === 404 && /^no route /.test(e.message ?? ""), `${where}: not routed`).toBe(false);
      }
      return;
  }
}

/** Replaces the character at a random position (any position, parameters included). */
const atPosition = (f: (ch: string) => string) =>
  fc.nat().map((n) => (path: string) => {
    const i = 1 + (n % Math.max(1, path.length - 1));
    return path.slice(0, i) + f(path[i] ?? "") + path.slice(i + 1);
  });

/**
 * One random change to a path, for the request-path fuzzing: the matrix's spellings at random
 * places, plus upper-casing, `%2e`, `%00`, a bad escape and non-ASCII.
 */
export const spellingMutation: fc.Arbitrary<(path: string) => string> = fc.oneof(
  atPosition((c) => (c === "" ? c : pct(c, false))),
  atPosition((c) => (c === "" ? c : pct(c, true))),
  atPosition((c) => (c === "/" ? "%2F" : c)),
  atPosition((c) => (c === "/" ? "%2f" : c)),
  atPosition((c) => (c === "/" ? "//" : c)),
  atPosition((c) => (c === "/" ? "/./" : c)),
  atPosition((c) => (c === "/" ? "/x/../" : c)),
  atPosition((c) => (c === "/" ? "/%2e/" : c)),
  atPosition((c) => c.toUpperCase()),
  atPosition((c) => `${c}%00`),
  atPosition((c) => `${c}%zz`),
  atPosition((c) => `${c}%C3%A9`),
  fc.constantFrom(
    (p: string) => `${p}/`,
    (p: string) => `${p};x`,
    (p: string) => `${p};`,
    (p: string) => `${p}?x=1`,
    (p: string) => `${p}#x`,
    (p: string) => `${p}%20`,
  ),
);

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { roleMeets } from "../../../fleet-server/auth/roles.js";
import { hasTopicMetacharacters, mayWill } from "../../../fleet-server/broker/acl.js";
import { deviceRole, dynsecPasswordFields, renderDynsecConfig } from "../../../fleet-server/broker/dynsec.js";
import { mosquittoHash, verifyMosquittoHash } from "../../../fleet-server/broker/mosquitto-config.js";
import { buildHttpApp, declaredRoutes, type HttpDeps } from "../../../fleet-server/http/app.js";
import { access, decide, declarationOf } from "../../../fleet-server/http/route-access.js";
import { keysInit, keysRotate } from "../../../scripts/fleetctl/keys-commands.js";
import { SignedRootSchema } from "../../../shared/schemas/trust.js";
import { createTopics } from "../../../shared/topics.js";
import { walkRootChain } from "../../../shared/trust/root-chain.js";
import { makeTempDir } from "../../helpers/temp-dir.js";

const topics = createTopics();

describe("API roles and route access (pure, issue 20 §1)", () => {
  it("roles are ordered: viewer < operator < admin", () => {
    expect(roleMeets("viewer", "viewer")).toBe(true);
    expect(roleMeets("viewer", "operator")).toBe(false);
    expect(roleMeets("operator", "operator")).toBe(true);
    expect(roleMeets("operator", "admin")).toBe(false);
    expect(roleMeets("admin", "operator")).toBe(true);
  });

  it("decide: the declared level and the presented credentials alone, no path involved", () => {
    const none = { kind: "none" } as const;
    const device = { kind: "device" } as const;
    const bearer = (role: "viewer" | "operator" | "admin") => ({ kind: "bearer", role }) as const;
    expect(decide("public", none)).toBe("ok");
    expect(decide("device-bundle", device)).toBe("ok");
    expect(decide("device-bundle", none)).toBe("unauthenticated");
    expect(decide("device-bundle", bearer("viewer"))).toBe("ok");
    expect(decide("viewer", device)).toBe("unauthenticated");
    expect(decide("viewer", bearer("viewer"))).toBe("ok");
    expect(decide("operator", bearer("viewer"))).toBe("forbidden");
    expect(decide("operator", bearer("operator"))).toBe("ok");
    expect(decide("admin", bearer("operator"))).toBe("forbidden");
    expect(decide("admin", bearer("admin"))).toBe("ok");
    expect(decide("admin", none)).toBe("unauthenticated");
    // null = no route matched: 404 for any token, 401 for anyone else.
    expect(decide(null, none)).toBe("unauthenticated");
    expect(decide(null, device)).toBe("unauthenticated");
    expect(decide(null, bearer("viewer"))).toBe("ok");
  });

  it("declarationOf: no or unknown access fails; read-only levels on a write method fail", () => {
    expect(declarationOf({ method: ["GET", "HEAD"], url: "/x", config: { access: "viewer" } })).toEqual([
      { method: "GET", url: "/x", access: "viewer", operation: null },
      { method: "HEAD", url: "/x", access: "viewer", operation: null },
    ]);
    // A route registered through its HTTP contract carries its operation id (issue 23).
    expect(declarationOf({ method: "GET", url: "/x", config: { access: "viewer", operation: "getX" } })).toEqual([
      { method: "GET", url: "/x", access: "viewer", operation: "getX" },
    ]);
    expect(() => declarationOf({ method: "GET", url: "/x" })).toThrow(/declares no access level/);
    expect(() => declarationOf({ method: "GET", url: "/x", config: { access: "root" as never } })).toThrow(
      /declares no access level/,
    );
    expect(() => declarationOf({ method: "POST", url: "/x", config: { access: "viewer" } })).toThrow(/read-only/);
    expect(() => declarationOf({ method: "DELETE", url: "/x", config: { access: "device-bundle" } })).toThrow(
      /read-only/,
    );
    expect(declarationOf({ method: "POST", url: "/x", config: { access: "public" } })[0]?.access).toBe("public");
  });

  it("buildHttpApp: a route added without a declaration stops the app (deny by default)", async () => {
    // The deps are never touched while routes are registered; only the hooks are exercised here.
    const app = await buildHttpApp({ log: pino({ level: "silent" }) } as unknown as HttpDeps);
    expect(() => app.get("/v1/undeclared", async () => "open")).toThrow(/declares no access level/);
    expect(() => app.post("/v1/sneaky", access("viewer"), async () => "open")).toThrow(/read-only/);
    app.get("/v1/declared", access("admin"), async () => "closed");
    expect(declaredRoutes(app).find((r) => r.url === "/v1/declared" && r.method === "GET")?.access).toBe("admin");
    // The automatic HEAD route of a GET carries the same declaration.
    expect(declaredRoutes(app).find((r) => r.url === "/v1/declared" && r.method === "HEAD")?.access).toBe("admin");
    await app.close();
  });
});

describe("broker rules (pure)", () => {
  it("a device's will only `offline` on its own presence topic; identities without + # / or NUL", () => {
    const dev = { kind: "device" as const, deviceId: "a" };
    const offline = Buffer.from("offline");
    expect(mayWill(topics, dev, topics.device("a", "presence"), offline)).toBe(true);
    expect(mayWill(topics, dev, topics.device("b", "presence"), offline)).toBe(false);
    expect(mayWill(topics, dev, topics.device("a", "reported"), offline)).toBe(false);
    // issue 20 §5: any other payload on the own presence topic (an `online` that outlives the device).
    for (const p of ["online", '"offline"', "offline ", "", "{}"]) {
      expect(mayWill(topics, dev, topics.device("a", "presence"), Buffer.from(p))).toBe(false);
    }
    for (const bad of ["a+", "#", "a/b", "x\u0000"]) expect(hasTopicMetacharacters(bad)).toBe(true);
    expect(hasTopicMetacharacters("dev-1.x:y_z")).toBe(false);
  });

  it("Mosquitto dynsec: a device role of exact topics (literal subscriptions), deny by default, no $SYS", () => {
    const role = deviceRole(topics, "AA:BB:CC:00:11:22");
    expect(role.acls).toContainEqual({
      acltype: "publishClientSend",
      topic: "fleet/v1/d/AA:BB:CC:00:11:22/reported",
      allow: true,
    });
    expect(role.acls).toContainEqual({
      acltype: "subscribeLiteral",
      topic: "fleet/v1/d/AA:BB:CC:00:11:22/desired",
      allow: true,
    });
    expect(role.acls).toContainEqual({ acltype: "subscribeLiteral", topic: "fleet/v1/trust/root", allow: true });
    expect(role.acls.filter((a) => /[#+]/.test(a.topic) || a.acltype === "subscribePattern")).toEqual([]);
    const h = mosquittoHash("pw-of-the-device");
    const conf = JSON.parse(
      renderDynsecConfig({
        topics,
        server: { username: "$fleet-server", hash: mosquittoHash("server-pw") },
        devices: [{ username: "AA:BB:CC:00:11:22", hash: h }],
      }),
    );
    expect(conf.defaultACLAccess).toEqual({
      publishClientSend: false,
      publishClientReceive: false,
      subscribe: false,
      unsubscribe: true,
    });
    expect(conf.clients[1]).toMatchObject({ username: "AA:BB:CC:00:11:22", clientid: "AA:BB:CC:00:11:22" });
    expect(conf.clients[1]).toMatchObject(dynsecPasswordFields(h));
    expect(JSON.stringify(conf)).not.toContain("$SYS");
  });

  it("$7$ hashes: ours verify, and mosquitto_passwd's own hashes verify with our checker", async () => {
    const h = mosquittoHash("s3cret-password");
    expect(h).toMatch(/^\$7\$101\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}$/);
    expect(verifyMosquittoHash("s3cret-password", h)).toBe(true);
    expect(verifyMosquittoHash("wrong", h)).toBe(false);
    if (!existsSync("/usr/bin/mosquitto_passwd")) return;
    const tmp = await makeTempDir("ef-pw-");
    try {
      const file = join(tmp.path, "pw");
      execFileSync("mosquitto_passwd", ["-b", "-c", file, "dev", "s3cret-password"]);
      const theirs = readFileSync(file, "utf8").trim().split(":")[1]!;
      expect(verifyMosquittoHash("s3cret-password", theirs)).toBe(true);
    } finally {
      await tmp.cleanup();
    }
  });
});

describe("fleetctl keys: init (k-of-n), rotate, chain", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  beforeAll(async () => {
    tmp = await makeTempDir("ef-keys-");
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  it("init writes 0600 keys in 0700 dirs and a 2-of-3 root; rotations chain version by version", () => {
    const dataDir = join(tmp.path, "d");
    const rootKeys = join(tmp.path, "offline");
    const v1 = keysInit({ dataDir, rootKeysDir: rootKeys, rootCount: 3, rootThreshold: 2, validityDays: 30 });
    expect(v1.roles.root).toMatchObject({ threshold: 2 });
    expect(v1.roles.root.keyids).toHaveLength(3);
    expect(statSync(rootKeys).mode & 0o777).toBe(0o700);
    expect(statSync(join(rootKeys, "root-v1-1.key")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, "keys", "director.key")).mode & 0o777).toBe(0o600);
    expect(() =>
      keysInit({ dataDir, rootKeysDir: rootKeys, rootCount: 1, rootThreshold: 1, validityDays: 1 }),
    ).toThrow();

    const v2 = keysRotate({
      dataDir,
      rootKeysDir: rootKeys,
      role: "director",
      count: 1,
      threshold: 1,
      validityDays: 30,
    });
    expect(v2.version).toBe(2);
    expect(v2.roles.director.keyids).not.toEqual(v1.roles.director.keyids);
    const v3 = keysRotate({ dataDir, rootKeysDir: rootKeys, role: "root", count: 2, threshold: 2, validityDays: 30 });
    expect(v3.version).toBe(3);
    const chain = (JSON.parse(readFileSync(join(dataDir, "root-chain.json"), "utf8")) as unknown[]).map((e) =>
      SignedRootSchema.parse(e),
    );
    expect(chain.map((e) => e.signed.version)).toEqual([1, 2, 3]);
    // A device pinned to v1 walks to v3.
    expect(walkRootChain(chain[0]!.signed, chain.slice(1)).version).toBe(3);
    // The old root keys were retired; a rotation needs the new ones.
    expect(existsSync(join(rootKeys, "retired", "root-v1-1.key"))).toBe(true);
  });

  it("a rotation without a threshold of the old root keys is refused and changes nothing", () => {
    const dataDir = join(tmp.path, "e");
    keysInit({ dataDir, rootKeysDir: join(tmp.path, "off2"), rootCount: 2, rootThreshold: 2, validityDays: 30 });
    const before = readFileSync(join(dataDir, "root.json"), "utf8");
    // Only an empty key directory at hand: no old root key can sign.
    expect(() =>
      keysRotate({
        dataDir,
        rootKeysDir: join(tmp.path, "nothing"),
        role: "release",
        count: 1,
        threshold: 1,
        validityDays: 30,
      }),
    ).toThrow(/threshold/);
    expect(readFileSync(join(dataDir, "root.json"), "utf8")).toBe(before);
  });
});

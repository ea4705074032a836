import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeviceIdSchema } from "../../shared/schemas/common.js";
import { createTopics } from "../../shared/topics.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import {
  BROKER_KINDS,
  type BrokerFixture,
  type Creds,
  connectOk,
  mosquittoAvailable,
  observe,
  sleep,
  startBrokerFixture,
  subscribeCodes,
  tryConnect,
} from "./broker-probe.js";

/**
 * One device-id grammar for the API, aedes and Mosquitto (issue 20 §5): the same table of ids
 * against all three. `:` (MAC-style ids) is valid everywhere; on Mosquitto such a device arrives
 * both through the generated bootstrap file (the offline path, which used to throw on `:` and so
 * wrote nothing for anyone) and live through dynamic security.
 */
const VALID = ["d", "dev-1", "AA:BB:CC:DD:EE:FF", "x.y_z-1:2", "a".repeat(128)];
const INVALID = ["", "a/b", "a+b", "a#", "-x", ":x", ".x", "a b", "a".repeat(129), "é", "$fleet-server", "a\u0000b"];
const topics = createTopics();

describe("device id grammar (pure)", () => {
  it("the table is what DeviceIdSchema says", () => {
    for (const id of VALID) expect(DeviceIdSchema.safeParse(id).success, id).toBe(true);
    for (const id of INVALID) expect(DeviceIdSchema.safeParse(id).success, JSON.stringify(id)).toBe(false);
  });
});

for (const kind of BROKER_KINDS) {
  describe.skipIf(kind === "mosquitto" && !mosquittoAvailable)(`device ids: API and ${kind}`, () => {
    let tmp: Awaited<ReturnType<typeof makeTempDir>>;
    let fx: BrokerFixture;
    const creds: Creds[] = [];
    // Half through the bootstrap file (Mosquitto), half enrolled live.
    const pre = VALID.filter((_, i) => i % 2 === 0);
    const live = VALID.filter((_, i) => i % 2 === 1);

    beforeAll(async () => {
      tmp = await makeTempDir("ef-ids-");
      const started = await startBrokerFixture(tmp.path, kind, pre);
      fx = started;
      creds.push(...started.preEnrolled);
      for (const id of live) creds.push(await fx.enroll(id));
    });

    afterAll(async () => {
      await fx?.close();
      await tmp?.cleanup();
    });

    it("the API refuses every invalid id with 400", async () => {
      for (const id of INVALID) {
        const res = await fetch(`${fx.server.httpUrl}/v1/devices`, {
          method: "POST",
          headers: { authorization: `Bearer ${fx.server.adminToken}`, "content-type": "application/json" },
          body: JSON.stringify({ id }),
        });
        expect(res.status, JSON.stringify(id)).toBe(400);
      }
    });

    it("every valid id connects, gets its own topics, and the server sees its presence", async () => {
      expect(creds.map((c) => c.id).sort()).toEqual([...VALID].sort());
      const spy = await observe(fx, topics.allDevices("presence"));
      for (const c of creds) {
        const dev = await connectOk(fx.url, { clientId: c.id, username: c.id, password: c.password });
        expect(await subscribeCodes(dev, topics.device(c.id, "desired")), c.id).toEqual([1]);
        await dev.publishAsync(topics.device(c.id, "presence"), "online", { qos: 1, retain: true });
        await dev.endAsync();
      }
      await sleep(300);
      expect(new Set(spy.seen.map((m) => m.topic))).toEqual(new Set(VALID.map((id) => topics.device(id, "presence"))));
      await spy.close();
      for (const id of VALID) {
        expect(((await fx.api.getDevice(id)) as { presence: string }).presence, id).toBe("online");
      }
    });

    it("every invalid id is refused at CONNECT", async () => {
      for (const id of INVALID.filter((i) => i !== "")) {
        const r = await tryConnect(fx.url, { clientId: id, username: id, password: creds[0]!.password });
        expect(r, JSON.stringify(id)).toBeInstanceOf(Error);
      }
    });
  });
}

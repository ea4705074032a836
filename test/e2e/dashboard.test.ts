import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Browser, BrowserContext, Page, Request, Route } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { waitFor } from "../helpers/agent-process.js";
import { memo } from "../helpers/memo.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { tinyInput } from "../helpers/tiny-models.js";
import { insertDeviceRecords, launchBrowser, logIn, MODEL, OUTPUT, pushTinyVersion } from "./dashboard-support.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { serverGet } from "./telemetry-support.js";

/**
 * Issue 15: the operator dashboard in a real headless Chromium (Debian's, through playwright-core)
 * against a real fleet server and two real agent processes. One server, one browser, two agents for
 * every case (the suite's time budget), in order: empty fleet, a live rollout, telemetry charts, an
 * abort from the page, the viewer's limits, an XSS payload, and the first load with 1,000 devices.
 */
const AGENTS = ["dash-a", "dash-b"];
const XSS = `<img src=x onerror="window.__xss=1">`;
const T = 120_000;

describe("e2e: operator dashboard in Chromium (issue 15)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let browser: Browser;
  let viewerCtx: BrowserContext;
  let operatorCtx: BrowserContext;
  let op: Page;
  let viewer: Page;
  let tokens: { viewer: string; operator: string };
  let base: string;
  const problems: string[] = [];
  const report: Record<string, unknown> = {};

  const watch = (p: Page, who: string) => {
    p.on("console", (m) => {
      if (m.type() === "error") problems.push(`${who} console: ${m.text()}`);
    });
    p.on("pageerror", (e) => problems.push(`${who} page error: ${e.message}`));
  };
  const shot = (p: Page, name: string) => p.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
  const status = (p: Page) => p.getAttribute("#rollout-status", "data-status");

  const xssDevice = memo(() => h.api.enrollDevice({ id: "xss-device", profile: "generic-x64", tags: { note: XSS } }));
  const loggedIn = new Map<Page, Promise<void>>();
  const logInOnce = (p: Page, token: string) => {
    if (!loggedIn.has(p)) loggedIn.set(p, logIn(p, base, token));
    return loggedIn.get(p)!;
  };
  /** Two agents and version 1.0.0 published. */
  const fleet = memo(async () => {
    const telemetry = { flushCron: "*/1 * * * * *", drift: { window: 200, minSamples: 10 } };
    await Promise.all([
      ...AGENTS.map((id) => h.startAgent(id, "generic-x64", { telemetry })),
      pushTinyVersion(h, tmp.path, "1.0.0", 1),
    ]);
  });
  /** The canary of 1.0.0 to both agents, started (the live case watches it). */
  const goodRollout = memo(async () => {
    await fleet();
    return h.api.createRollout({
      model: MODEL,
      version: "1.0.0",
      variant: "fp32",
      target: { tags: { suite: "e2e" } },
      strategy: "canary",
      stages: [{ percent: 50 }, { percent: 100 }],
      healthPolicy: { probationSeconds: 1 },
    });
  });
  const goodRolloutDone = memo(async () => {
    const r = await goodRollout();
    return h.api.waitForRollout(r.id, { timeoutMs: T, intervalMs: 500 });
  });
  /** 2.0.0, built for arm64 only: both x64 agents refuse it and the gate pauses the rollout. */
  const badRolloutPaused = memo(async () => {
    await goodRolloutDone();
    await pushTinyVersion(h, tmp.path, "2.0.0", 3, { armOnly: true });
    const bad = await h.api.createRollout({
      model: MODEL,
      version: "2.0.0",
      variant: "fp32",
      target: { tags: { suite: "e2e" } },
      stages: [{ percent: 100, gates: { minDevices: 2, maxFailedPercent: 0 } }],
      healthPolicy: { probationSeconds: 1 },
    });
    await h.api.waitForRollout(bad.id, { timeoutMs: T, intervalMs: 500, until: (r) => r.status === "paused" });
    return bad.id;
  });

  beforeAll(async () => {
    tmp = await makeTempDir("ef-dash-");
    [h, browser] = await Promise.all([startHarness(tmp.path), launchBrowser()]);
    base = h.server.httpUrl;
    const [v, o] = await Promise.all([
      h.api.createToken({ name: "dash-viewer", role: "viewer" }),
      h.api.createToken({ name: "dash-operator", role: "operator" }),
    ]);
    tokens = { viewer: v.token, operator: o.token };
    viewerCtx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    operatorCtx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    viewer = await viewerCtx.newPage();
    op = await operatorCtx.newPage();
    watch(viewer, "viewer");
    watch(op, "operator");
  }, T);

  afterAll(async () => {
    await browser?.close();
    await h?.close();
    await tmp?.cleanup();
    if (Object.keys(report).length > 0) {
      await writeFile(join(OUTPUT, "report.json"), JSON.stringify(report, null, 2));
      console.log(`dashboard report: ${JSON.stringify(report)}`);
    }
  });

  it(
    "fresh server: a bad token is refused, a viewer logs in and sees what to do first; strict CSP",
    async () => {
      const res = await fetch(`${base}/ui/`);
      expect(res.status).toBe(200);
      const csp = res.headers.get("content-security-policy") ?? "";
      expect(csp).toContain("default-src 'self'");
      expect(csp).not.toContain("unsafe-inline");
      expect(await res.text()).not.toMatch(/<script>|<style|style=/);

      const bare = await fetch(`${base}/ui`, { redirect: "manual" });
      expect([bare.status, bare.headers.get("location")]).toEqual([308, "/ui/"]);
      // The stream is a viewer route like any other; `since` is required, so no bare GET opens one.
      const bearer = { authorization: `Bearer ${tokens.viewer}` };
      expect((await fetch(`${base}/v1/events?since=0`)).status).toBe(401);
      expect((await fetch(`${base}/v1/events`, { headers: bearer })).status).toBe(400);
      expect(await (await fetch(`${base}/v1/session`, { headers: bearer })).json()).toMatchObject({ role: "viewer" });

      await viewer.goto(`${base}/ui/`);
      await viewer.fill("#token", "not-a-token-at-all");
      await viewer.click("button[type=submit]");
      await viewer.waitForSelector("text=That token is not valid.");
      expect(viewer.url()).not.toContain("not-a-token");

      await logInOnce(viewer, tokens.viewer);
      expect(await viewer.getAttribute("#role", "data-role")).toBe("viewer");
      await viewer.waitForSelector("#empty-state");
      expect(await viewer.textContent("#empty-state")).toContain("fleetctl devices add");
      // The token is in this tab's sessionStorage, in no URL.
      expect(viewer.url()).not.toContain(tokens.viewer);
      expect(await viewer.evaluate("sessionStorage.getItem('edgefleet.token')")).toBe(tokens.viewer);
      await shot(viewer, "overview-empty");
    },
    T,
  );

  it(
    "an operator follows a real rollout to two agents until completed, without reloading",
    async () => {
      const [, created] = await Promise.all([logInOnce(op, tokens.operator), goodRollout()]);
      await op.goto(`${base}/ui/#/rollouts/${created.id}`);
      await op.waitForSelector("#rollout-status");
      await op.waitForSelector(".live.on");
      let navigations = 0;
      op.on("framenavigated", (f) => {
        if (f === op.mainFrame()) navigations++;
      });
      await op.evaluate("window.__sameDocument = true");
      const seen = new Set<string>();
      await waitFor(
        "the page to show the rollout completed",
        async () => {
          seen.add((await op.textContent("#rollout-progress")) ?? "");
          return (await status(op)) === "completed";
        },
        T,
      );
      expect(navigations).toBe(0);
      expect(await op.evaluate("window.__sameDocument")).toBe(true);
      // It moved on screen: more than one progress figure was shown on the way.
      expect(seen.size).toBeGreaterThan(1);
      expect(await op.textContent("#rollout-progress")).toContain("2/2 committed");
      await shot(op, "rollout-completed");
    },
    T,
  );

  it(
    "a device page charts latency, error rate and drift from the agent's real telemetry",
    async () => {
      await Promise.all([logInOnce(op, tokens.operator), goodRolloutDone()]);
      const client: SocketClient = await waitForServing(h.agents.get("dash-a")!, MODEL);
      for (let i = 0; i < 60; i++) {
        const x = [0, 1, 2, 3].map((k) => ((i * 7 + k * 3) % 100) / 10) as [number, number, number, number];
        await client.inferTensors(MODEL, tinyInput(x));
      }
      await client.raw("POST", "/v1/telemetry/flush");
      await waitFor("inference and drift records on the server", async () => {
        const get = (kind: string) =>
          serverGet<{ total: number }>(h.server, `/v1/devices/dash-a/telemetry?kind=${kind}&limit=1`);
        const [inf, drift] = await Promise.all([get("inference"), get("drift")]);
        return inf.total >= 60 && drift.total >= 1;
      });
      await op.goto(`${base}/ui/#/devices/dash-a`);
      await op.waitForSelector("[data-chart=latency] polyline");
      expect(await op.locator("[data-chart=latency] polyline").count()).toBe(2);
      const p95 = await op.getAttribute("[data-chart=latency] polyline[data-series='p95 ms']", "points");
      expect(p95?.split(" ").length).toBeGreaterThan(1);
      expect(await op.locator("[data-chart=errors] polyline").count()).toBe(1);
      expect(await op.locator("[data-chart=drift] polyline").count()).toBeGreaterThanOrEqual(1);
      expect(await op.textContent("[data-chart=drift]")).toContain(`PSI ${MODEL} x_values`);
      expect(await op.textContent("main")).toContain("1.0.0 fp32");
      await shot(op, "device");
    },
    T,
  );

  it(
    "a slow answer for the page just left never paints over the page just opened",
    async () => {
      const [, done] = await Promise.all([logInOnce(op, tokens.operator), goodRolloutDone()]);
      // The device page's reads are held until the test lets them go: a slow link, a busy server.
      const isDeviceRead = (url: string | URL) => new URL(url).pathname.startsWith("/v1/devices/dash-a");
      const held: Route[] = [];
      let release = false;
      await op.route(isDeviceRead, (r) => (release ? r.continue() : void held.push(r)));
      let started = 0;
      let ended = 0;
      const end = (r: Request) => void (isDeviceRead(r.url()) && ended++);
      op.on("request", (r) => void (isDeviceRead(r.url()) && started++));
      op.on("requestfinished", end);
      op.on("requestfailed", end);
      try {
        await op.goto(`${base}/ui/#/devices/dash-b`);
        await op.waitForSelector("#device-id");
        await op.goto(`${base}/ui/#/devices/dash-a`);
        await waitFor("the device page's reads to be held", async () => held.length > 0);
        await op.goto(`${base}/ui/#/rollouts/${done.id}`);
        await op.waitForSelector("#rollout-status");
        // Any paint of the device page from now on is the defect, even one a later refresh hides.
        await op.evaluate(`(() => {
          window.__stalePaint = false;
          new MutationObserver(() => {
            if (document.getElementById("device-id")) window.__stalePaint = true;
          }).observe(document.getElementById("main"), { childList: true, subtree: true });
        })()`);
        release = true;
        for (const r of held.splice(0)) await r.continue();
        // Every read the device page made has answered, and no new one started for a while: its
        // draw is over (it paints synchronously after its last read).
        let quietSince = Date.now();
        let last = -1;
        await waitFor("the device page's reads to finish", async () => {
          if (started !== last || started !== ended) [last, quietSince] = [started, Date.now()];
          return started > 0 && started === ended && Date.now() - quietSince > 1000;
        });
        expect(await op.evaluate("window.__stalePaint")).toBe(false);
        expect(await status(op)).toBe("completed");
        expect(new URL(op.url()).hash).toBe(`#/rollouts/${done.id}`);
      } finally {
        await op.unroute(isDeviceRead);
      }
    },
    T,
  );

  it(
    "a failing rollout stops at its gate; the operator aborts it from the page and the devices stay on 1.0.0",
    async () => {
      const [, bad] = await Promise.all([logInOnce(op, tokens.operator), badRolloutPaused()]);
      await op.goto(`${base}/ui/#/rollouts/${bad}`);
      await waitFor("the page to show the rollout paused by its gate", async () => (await status(op)) === "paused", T);
      await op.waitForSelector("text=INCOMPATIBLE");
      await op.click("[data-action=abort]");
      await op.waitForSelector("dialog[open]");
      await op.click("#confirm-action");
      await waitFor("the page to show the rollout aborted", async () => (await status(op)) === "aborted", T);
      // The command's answer outlives the redraw that follows it.
      await op.waitForSelector('#action-result:text-is("abort: done")');
      await shot(op, "rollout-aborted");
      for (const id of AGENTS) {
        const d = await h.api.getDevice(id);
        const m = d.reported?.models.find((x) => x.model === MODEL);
        expect(m?.committed?.version, id).toBe("1.0.0");
      }
      await op.goto(`${base}/ui/#/devices`);
      await op.waitForSelector("[data-device=dash-b]");
      const rows = await op.locator("tbody tr").allTextContents();
      for (const id of AGENTS) expect(rows.find((r) => r.includes(id))).toContain(`${MODEL} 1.0.0 (`);
    },
    T,
  );

  it(
    "a viewer sees the rollout but no action, and the API refuses the command from the page anyway",
    async () => {
      const [, , bad] = await Promise.all([
        logInOnce(viewer, tokens.viewer),
        logInOnce(op, tokens.operator),
        badRolloutPaused(),
      ]);
      // Paused by its gate, or aborted when the case before ran: an operator may act on it either way.
      const before = (await h.api.getRollout(bad)).status;
      await viewer.goto(`${base}/ui/#/rollouts/${bad}`);
      await viewer.waitForSelector("#rollout-status");
      expect(await viewer.locator("[data-action]").count()).toBe(0);
      // What a crafted click would send: the viewer's own token, straight at the command route.
      const answer = await viewer.evaluate(`(async () => {
      const res = await fetch("/v1/rollouts/${bad}/rollback", {
        method: "POST",
        headers: { authorization: "Bearer " + sessionStorage.getItem("edgefleet.token") },
      });
      return { status: res.status, body: await res.json() };
    })()`);
      expect(answer).toMatchObject({ status: 403, body: { error: { code: "FORBIDDEN" } } });
      expect((await h.api.getRollout(bad)).status).toBe(before);
      // The operator's page offers rollback on the same rollout.
      await op.goto(`${base}/ui/#/rollouts/${bad}`);
      await op.waitForSelector("[data-action=rollback]");
      await shot(viewer, "rollout-viewer");
    },
    T,
  );

  it(
    "an XSS payload in a device tag is shown as text",
    async () => {
      await Promise.all([logInOnce(viewer, tokens.viewer), fleet(), xssDevice()]);
      await viewer.goto(`${base}/ui/#/devices?q=xss`);
      await viewer.waitForSelector("[data-device=xss-device]");
      expect(await viewer.textContent("tbody")).toContain(XSS);
      await viewer.goto(`${base}/ui/#/devices/xss-device`);
      await viewer.waitForSelector("#device-tags");
      expect(await viewer.textContent("#device-tags")).toBe(`note=${XSS}`);
      expect(await viewer.locator("main img").count()).toBe(0);
      // The other pages render the same fleet without error: models with both versions, and the
      // audit page, which tells a non-admin it needs an admin token.
      await viewer.goto(`${base}/ui/#/models`);
      await viewer.waitForSelector(`h2:has-text("${MODEL}")`);
      expect(await viewer.textContent("main")).toMatch(/1\.0\.0.*fp32/s);
      expect(await viewer.textContent("main")).toMatch(/Fleet health of \d|No fleet telemetry for \d/);
      // The newest version's signed lineage, as pushed.
      await viewer.click("details.lineage summary");
      expect(await viewer.textContent("details.lineage")).toMatch(
        /source.*git:edgefleet-tests@\d.*metric accuracy.*0\.97/s,
      );
      // Its bundled sample with the fp32 output every device checks: x = ones through y = W·x + B.
      await viewer.click("details.samples summary");
      expect(await viewer.textContent("details.samples")).toMatch(/ones.*x FP32\[1×4\].*y FP32\[1×4\]: [-\d.]+, /s);
      await shot(viewer, "models");
      await viewer.goto(`${base}/ui/#/audit`);
      await viewer.waitForSelector("#audit-admin-only");
      expect(await viewer.evaluate("window.__xss")).toBeUndefined();
    },
    T,
  );

  it(
    "first load with 1,000 enrolled devices (measured, not asserted), and a phone-width overview",
    async () => {
      await insertDeviceRecords(tmp.path, 1000);
      const total = (await h.api.listDevices()).devices.length;
      expect(total).toBeGreaterThanOrEqual(1000);
      const page = await operatorCtx.newPage();
      watch(page, "operator-1000");
      await logIn(page, base, tokens.operator);
      const t0 = Date.now();
      await page.goto(`${base}/ui/#/`);
      await page.waitForSelector(`#device-count:has-text("${total}")`);
      const overviewMs = Date.now() - t0;
      await shot(page, "overview-1000");
      const t1 = Date.now();
      await page.goto(`${base}/ui/#/devices?page=20`);
      await page.waitForSelector("text=Page 20 of");
      const devicesMs = Date.now() - t1;
      // What the event stream reads every second while a page is open (the same summaries).
      const t2 = Date.now();
      await fetch(`${base}/v1/devices`, { headers: { authorization: `Bearer ${tokens.operator}` } }).then((r) =>
        r.json(),
      );
      const listDevicesMs = Date.now() - t2;
      const nav = await page.evaluate(
        "Math.round(performance.getEntriesByType('navigation')[0]?.domContentLoadedEventEnd ?? -1)",
      );
      Object.assign(report, {
        devices: total,
        overviewFirstLoadMs: overviewMs,
        devicesPage20Ms: devicesMs,
        listDevicesApiMs: listDevicesMs,
        domContentLoadedMs: nav,
      });
      await shot(page, "devices-1000");
      const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
      const p = await phone.newPage();
      await logIn(p, base, tokens.viewer);
      await p.waitForSelector("#device-count");
      const overflow = await p.evaluate<number>("document.documentElement.scrollWidth - window.innerWidth");
      expect(overflow).toBeLessThanOrEqual(1);
      await shot(p, "overview-phone");
      await phone.close();
      // Nothing on any page broke the CSP or threw.
      expect(problems.filter((x) => !/401|403|Failed to load resource/.test(x))).toEqual([]);
    },
    T,
  );
});

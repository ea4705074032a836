import type { ApiRole } from "../../../shared/http/security.js";
import { ApiError, api, followEvents, session, whenUnauthorized } from "./api.js";
import type { Page, PageContext } from "./app-context.js";
import { clear, el, on } from "./dom.js";
import { auditPage } from "./pages/audit.js";
import { devicePage } from "./pages/device.js";
import { devicesPage } from "./pages/devices.js";
import { modelsPage } from "./pages/models.js";
import { overviewPage } from "./pages/overview.js";
import { rolloutPage, rolloutsPage } from "./pages/rollouts.js";

/** Hash routes: the server serves one page; `#/devices/x` never reaches it, so it logs nothing. */
const ROUTES: [RegExp, Page][] = [
  [/^\/$/, overviewPage],
  [/^\/devices$/, devicesPage],
  [/^\/devices\/(.+)$/, devicePage],
  [/^\/models$/, modelsPage],
  [/^\/rollouts$/, rolloutsPage],
  [/^\/rollouts\/(.+)$/, rolloutPage],
  [/^\/audit$/, auditPage],
];
const NAV: [string, string][] = [
  ["#/", "Overview"],
  ["#/devices", "Devices"],
  ["#/models", "Models"],
  ["#/rollouts", "Rollouts"],
  ["#/audit", "Audit"],
];

const app = document.getElementById("app")!;
let who: { actor: string; role: ApiRole } | null = null;
let stopEvents: (() => void) | null = null;
let current: { page: Page; ctx: PageContext } | null = null;
let redraw: ReturnType<typeof setTimeout> | null = null;
/**
 * Draw ordering. Invariant: only the newest draw paints #main. Every draw renders into a detached
 * element and swaps it in only if no draw started after it; otherwise a slow answer for the page just
 * left (the device page's telemetry reads) would paint over the page just opened, and stay there
 * until an event that page follows arrived (stop 15's CI run: the rollout page replaced by the device
 * page, its buttons gone). `drawing`/`dirty` keep live refreshes from superseding each other forever
 * on a slow link: an event during a draw asks for one more draw after it, not a new one now.
 */
let drawSeq = 0;
let drawing = false;
let dirty = false;
let liveDot: HTMLElement | null = null;

function logout(): void {
  session.clear();
  who = null;
  stopEvents?.();
  stopEvents = null;
  showLogin();
}
whenUnauthorized(logout);

function showLogin(message?: string): void {
  clear(app);
  const input = el("input", {
    type: "password",
    id: "token",
    name: "token",
    autocomplete: "off",
    required: true,
    "aria-label": "API token",
  });
  const error = el("p", { class: "error", role: "alert" }, message ?? "");
  // Built by the script (no form without it), submitted by the script: the token goes only into
  // the Authorization header of a fetch, never into a URL.
  const form = el(
    "form",
    { method: "post", action: "#" },
    el("label", { for: "token" }, "API token"),
    input,
    el("button", { type: "submit", class: "primary" }, "Log in"),
    error,
  );
  on(form, "submit", (e) => {
    e.preventDefault();
    const token = input.value.trim();
    api<{ actor: string; role: ApiRole }>("/v1/session", { token })
      .then((s) => {
        session.set(token);
        who = s;
        start();
      })
      .catch((err: unknown) => {
        error.textContent = err instanceof ApiError && err.status === 401 ? "That token is not valid." : String(err);
      });
  });
  app.appendChild(
    el(
      "main",
      { class: "login" },
      el(
        "section",
        { class: "card" },
        el("h1", {}, "EdgeFleet"),
        el("p", { class: "muted" }, "Log in with an API token (fleetctl tokens create). It is kept in this tab only."),
        form,
      ),
    ),
  );
  input.focus();
}

function parseHash(): { path: string; query: URLSearchParams } {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, q] = raw.split("?", 2);
  return { path: path || "/", query: new URLSearchParams(q ?? "") };
}

async function route(): Promise<void> {
  if (!who) return;
  const { path, query } = parseHash();
  const main = document.getElementById("main")!;
  for (const a of document.querySelectorAll("header.top nav a")) {
    const href = a.getAttribute("href")!.slice(1);
    a.classList.toggle("active", href === "/" ? path === "/" : path.startsWith(href));
  }
  const hit = ROUTES.map(([re, page]) => ({ m: re.exec(path), page })).find((x) => x.m);
  if (!hit) {
    clear(main);
    main.appendChild(el("p", {}, "No such page. ", el("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  const ctx: PageContext = {
    root: main,
    role: who.role,
    params: hit.m!.slice(1).map((p) => decodeURIComponent(p)),
    query,
    setQuery(q) {
      const s = q.toString();
      history.replaceState(null, "", `#${path}${s ? `?${s}` : ""}`);
      ctx.query = q;
      void draw();
    },
    redraw: () => void draw(),
  };
  current = { page: hit.page, ctx };
  await draw();
}

async function draw(): Promise<void> {
  if (!current) return;
  const { page, ctx } = current;
  const mine = ++drawSeq;
  drawing = true;
  dirty = false;
  const staging = document.createElement("div");
  try {
    await page.render({ ...ctx, root: staging });
  } catch (err) {
    clear(staging);
    staging.appendChild(el("p", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err)));
  }
  // A later draw (another route, a query change, a refresh) owns #main now; it paints, not this one.
  if (mine !== drawSeq) return;
  drawing = false;
  ctx.root.replaceChildren(...staging.childNodes);
  if (dirty) scheduleRefresh();
}

/** A live event for the current page: one re-read after a short burst, or after the draw in flight. */
function scheduleRefresh(): void {
  if (drawing) {
    dirty = true;
    return;
  }
  // Several changes in a burst (a stage advancing) are one re-read.
  if (redraw) return;
  redraw = setTimeout(() => {
    redraw = null;
    void draw();
  }, 250);
}

function start(): void {
  if (!who) return;
  clear(app);
  liveDot = el("span", { class: "live", title: "live updates", "data-live": "off" });
  const logoutButton = on(el("button", { type: "button" }, "Log out"), "click", logout);
  app.appendChild(
    el(
      "header",
      { class: "top" },
      el("span", { class: "brand" }, "EdgeFleet"),
      el("nav", { "aria-label": "Pages" }, ...NAV.map(([href, label]) => el("a", { href }, label))),
      el(
        "span",
        { class: "who" },
        liveDot,
        el("span", { id: "role", "data-role": who.role }, `${who.actor} (${who.role})`),
        logoutButton,
      ),
    ),
  );
  app.appendChild(el("main", { id: "main" }));
  stopEvents?.();
  stopEvents = followEvents(
    (e) => {
      if (!current) return;
      const follows = current.page.follows as readonly string[];
      if (e.type !== "reset" && !follows.includes(e.type)) return;
      scheduleRefresh();
    },
    (live) => {
      liveDot?.classList.toggle("on", live);
      liveDot?.setAttribute("data-live", live ? "on" : "off");
    },
  );
  void route();
}

window.addEventListener("hashchange", () => void route());

async function boot(): Promise<void> {
  const token = session.token();
  if (!token) return showLogin();
  try {
    who = await api<{ actor: string; role: ApiRole }>("/v1/session", { token });
    start();
  } catch {
    session.clear();
    showLogin();
  }
}
void boot();

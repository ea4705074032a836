import type { DeviceSummary } from "../../../../shared/http/devices.js";
import { api } from "../api.js";
import type { Page } from "../app-context.js";
import { badge, clear, el, fmtTime, on, table } from "../dom.js";

const PAGE_SIZE = 50;

/** Pure: the devices matching the list's filters (search over id, profile and tags). */
export function filterDevices(devices: DeviceSummary[], q: URLSearchParams): DeviceSummary[] {
  const text = (q.get("q") ?? "").toLowerCase();
  const presence = q.get("presence") ?? "";
  const profile = q.get("profile") ?? "";
  const state = q.get("state") ?? "";
  return devices.filter((d) => {
    if (presence && d.presence !== presence) return false;
    if (profile && (d.profile ?? "(none)") !== profile) return false;
    if (state && !(state === "no model" ? d.models.length === 0 : d.models.some((m) => m.state === state)))
      return false;
    if (!text) return true;
    const hay = [d.id, d.profile ?? "", ...Object.entries(d.tags).map(([k, v]) => `${k}=${v}`)].join(" ").toLowerCase();
    return hay.includes(text);
  });
}

function select(name: string, label: string, values: string[], current: string): HTMLSelectElement {
  return el(
    "select",
    { name, "aria-label": label },
    el("option", { value: "" }, `${label}: any`),
    ...values.map((v) => el("option", { value: v, selected: v === current }, v)),
  );
}

export const devicesPage: Page = {
  follows: ["device"],
  async render(ctx) {
    const { devices } = await api<{ devices: DeviceSummary[] }>("/v1/devices");
    const q = ctx.query;
    const matched = filterDevices(devices, q).sort((a, b) => a.id.localeCompare(b.id));
    const pages = Math.max(1, Math.ceil(matched.length / PAGE_SIZE));
    const page = Math.min(pages, Math.max(1, Number(q.get("page") ?? "1") || 1));
    const shown = matched.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE);
    const uniq = (xs: string[]) => [...new Set(xs)].sort();

    const set = (k: string, v: string) => {
      const next = new URLSearchParams(ctx.query);
      if (v) next.set(k, v);
      else next.delete(k);
      if (k !== "page") next.delete("page");
      ctx.setQuery(next);
    };
    const search = el("input", {
      type: "search",
      name: "q",
      placeholder: "Search id, profile, tag",
      value: q.get("q") ?? "",
    });
    on(search, "change", () => set("q", search.value.trim()));
    const filters = el("div", { class: "filters" }, search);
    for (const [name, label, values] of [
      ["presence", "Presence", ["online", "offline", "unknown"]],
      ["profile", "Profile", uniq(devices.map((d) => d.profile ?? "(none)"))],
      ["state", "State", uniq(["no model", ...devices.flatMap((d) => d.models.map((m) => m.state))])],
    ] as const) {
      const s = select(name, label, [...values], q.get(name) ?? "");
      on(s, "change", () => set(name, s.value));
      filters.appendChild(s);
    }

    clear(ctx.root);
    ctx.root.appendChild(el("h1", {}, "Devices"));
    ctx.root.appendChild(filters);
    ctx.root.appendChild(
      el("p", { class: "muted", id: "device-total" }, `${matched.length} of ${devices.length} devices`),
    );
    ctx.root.appendChild(
      table(
        ["Device", "Presence", "Profile", "Tags", "Models", "Last seen"],
        shown.map((d) => [
          el("a", { href: `#/devices/${encodeURIComponent(d.id)}`, "data-device": d.id }, d.id),
          badge(d.presence),
          d.profile ?? "—",
          el(
            "span",
            { class: "tags" },
            Object.entries(d.tags)
              .map(([k, v]) => `${k}=${v}`)
              .join(", "),
          ),
          el("span", {}, d.models.map((m) => `${m.model} ${m.committedVersion ?? "—"} (${m.state})`).join("; ") || "—"),
          el("span", { class: "hide-narrow" }, fmtTime(d.lastSeen)),
        ]),
        devices.length === 0 ? "No device is enrolled yet: fleetctl devices add <id>." : "No device matches.",
      ),
    );
    if (pages > 1) {
      const prev = el("button", { type: "button", disabled: page <= 1 }, "Previous");
      const next = el("button", { type: "button", disabled: page >= pages }, "Next");
      on(prev, "click", () => set("page", String(page - 1)));
      on(next, "click", () => set("page", String(page + 1)));
      ctx.root.appendChild(el("div", { class: "pager" }, prev, el("span", {}, `Page ${page} of ${pages}`), next));
    }
  },
};

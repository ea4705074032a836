import type { DeviceSummary } from "../../../../shared/http/devices.js";
import type { RolloutSummary } from "../../../../shared/http/rollouts.js";
import { api } from "../api.js";
import type { Page } from "../app-context.js";
import { append, card, clear, countRows, el } from "../dom.js";
import { rolloutProgress } from "./rollout-parts.js";

interface ModelLine {
  name: string;
  versions: number;
  latestVersion: string;
}

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

/** The first screen: what to do first on an empty server, else the fleet at a glance. */
export const overviewPage: Page = {
  follows: ["device", "rollout"],
  async render({ root }) {
    const [{ devices }, { rollouts }, { models }] = await Promise.all([
      api<{ devices: DeviceSummary[] }>("/v1/devices"),
      api<{ rollouts: RolloutSummary[] }>("/v1/rollouts"),
      api<{ models: ModelLine[] }>("/v1/models"),
    ]);
    clear(root);
    root.appendChild(el("h1", {}, "Fleet overview"));
    if (devices.length === 0 && models.length === 0) {
      root.appendChild(
        el(
          "section",
          { class: "card empty", id: "empty-state" },
          el("h2", {}, "This fleet is empty"),
          el("p", {}, "Nothing is enrolled or published yet. To start:"),
          el(
            "ol",
            {},
            el("li", {}, "Enroll a device: ", el("code", {}, "fleetctl devices add <id> --profile generic-x64")),
            el("li", {}, "Start its agent with the printed password (docs/operations.md)."),
            el(
              "li",
              {},
              "Publish a model: ",
              el("code", {}, "fleetctl models push model.onnx --name <name> --version 1.0.0"),
            ),
            el("li", {}, "Roll it out: ", el("code", {}, "fleetctl rollouts create --file rollout.yaml")),
          ),
        ),
      );
      return;
    }
    const presence = new Map<string, number>();
    const profiles = new Map<string, number>();
    const tags = new Map<string, number>();
    const states = new Map<string, number>();
    const versions = new Map<string, Map<string, number>>();
    for (const d of devices) {
      bump(presence, d.presence);
      bump(profiles, d.profile ?? "(none)");
      for (const [k, v] of Object.entries(d.tags)) bump(tags, `${k}=${v}`);
      if (d.models.length === 0) bump(states, "no model");
      for (const m of d.models) {
        bump(states, m.state);
        const per = versions.get(m.model) ?? new Map<string, number>();
        bump(per, m.committedVersion ?? "(none committed)");
        versions.set(m.model, per);
      }
    }
    const n = devices.length;
    const active = rollouts.filter((r) => ["running", "paused", "rolling-back"].includes(r.status));
    root.appendChild(
      el(
        "div",
        { class: "grid" },
        card(
          "Devices",
          el("div", { class: "big", id: "device-count" }, n),
          el("p", { class: "muted" }, `${presence.get("online") ?? 0} online, ${presence.get("offline") ?? 0} offline`),
          countRows(presence, n, (k) => `#/devices?presence=${encodeURIComponent(k)}`),
        ),
        card(
          "Update state",
          countRows(states, n, (k) => `#/devices?state=${encodeURIComponent(k)}`),
        ),
        card(
          "Profiles",
          countRows(profiles, n, (k) => `#/devices?profile=${encodeURIComponent(k)}`),
        ),
        card("Tags", countRows(new Map([...tags].sort((a, b) => b[1] - a[1]).slice(0, 12)), n)),
      ),
    );
    const versionCards = [...versions.entries()].map(([model, per]) =>
      card(
        `Versions of ${model}`,
        countRows(
          per,
          [...per.values()].reduce((a, b) => a + b, 0),
        ),
      ),
    );
    const activeCard = card(
      "Active rollouts",
      active.length === 0
        ? el("p", { class: "muted" }, "None running.")
        : el(
            "div",
            {},
            ...active.map((r) =>
              el(
                "div",
                {},
                el("a", { href: `#/rollouts/${encodeURIComponent(r.id)}` }, `${r.model} ${r.version} (${r.status})`),
                rolloutProgress(r.counts),
              ),
            ),
          ),
    );
    const grid = el("div", { class: "grid" });
    append(grid, [activeCard, ...versionCards]);
    root.appendChild(grid);
  },
};

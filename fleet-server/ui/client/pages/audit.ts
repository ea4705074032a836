import type { z } from "zod";
import type { AuditEntrySchema } from "../../../../shared/http/security.js";
import { api } from "../api.js";
import type { Page } from "../app-context.js";
import { clear, el, fmtTime, table } from "../dom.js";

type Entry = z.output<typeof AuditEntrySchema>;

/** The audit log (admin tokens only, like `GET /v1/audit`): every change made through the API, newest first. */
export const auditPage: Page = {
  follows: ["rollout"],
  async render({ root, role }) {
    clear(root);
    root.appendChild(el("h1", {}, "Audit log"));
    if (role !== "admin") {
      root.appendChild(
        el("p", { class: "muted", id: "audit-admin-only" }, "The audit log is readable with an admin token only."),
      );
      return;
    }
    const entries: Entry[] = [];
    for (let after = 0; ; ) {
      const page = await api<{ entries: Entry[] }>(`/v1/audit?after=${after}&limit=1000`);
      entries.push(...page.entries);
      if (page.entries.length < 1000) break;
      after = page.entries.at(-1)!.seq;
    }
    root.appendChild(
      table(
        ["Time", "Actor", "Role", "Request", "Status"],
        entries
          .reverse()
          .slice(0, 500)
          .map((e) => [
            fmtTime(e.at),
            e.actor,
            e.role ?? "—",
            `${e.method} ${e.path}`,
            `${e.status}${e.errorCode ? ` ${e.errorCode}` : ""}`,
          ]),
        "Nothing changed through the API yet.",
      ),
    );
  },
};

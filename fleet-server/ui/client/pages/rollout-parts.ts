import type { RolloutSummary } from "../../../../shared/http/rollouts.js";
import { el } from "../dom.js";

/** A progress bar of committed / in progress / failed over the rollout's devices, and its figures. */
export function rolloutProgress(counts: RolloutSummary["counts"]): HTMLElement {
  const bar = el("div", { class: "bar", role: "img", "aria-label": "progress" });
  const part = (cls: string, n: number) => {
    const s = el("span", { class: cls });
    s.style.width = `${counts.total > 0 ? (100 * n) / counts.total : 0}%`;
    bar.appendChild(s);
  };
  part("committed", counts.committed);
  part("inprogress", counts.inProgress);
  part("failed", counts.failed);
  return el(
    "div",
    { class: "progress" },
    bar,
    el(
      "span",
      { class: "muted progress-text" },
      `${counts.committed}/${counts.total} committed, ${counts.inProgress} in progress, ${counts.failed} failed`,
    ),
  );
}

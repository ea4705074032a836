import type { ApiRole } from "../../../shared/http/security.js";

/** What every page gets: where to draw, who is logged in, and how to ask for a redraw. */
export interface PageContext {
  root: HTMLElement;
  role: ApiRole;
  /** Path parameters of the route (`#/devices/:id`) and the hash's query. */
  params: string[];
  query: URLSearchParams;
  /** Changes the hash query without a reload (filters, paging). */
  setQuery(q: URLSearchParams): void;
  /** Draws the page again from fresh data (after a command); the newest draw wins (main.ts). */
  redraw(): void;
}

/** A page: draws once, and `refresh` is called again on live events that concern it. */
export interface Page {
  render(ctx: PageContext): Promise<void>;
  /** Which stream events make the page re-read its data. */
  follows: readonly ("rollout" | "device")[];
}

export const canAct = (role: ApiRole) => role === "operator" || role === "admin";

/**
 * The only way the dashboard builds markup: elements with attributes and text nodes. Data never
 * goes through innerHTML, so a device tag or model name holding `<img onerror=…>` stays text.
 */
export type Child = Node | string | number | null | undefined | false;
export type Attrs = Record<string, string | number | boolean | undefined | null>;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    // Handlers are attached with addEventListener, styles through classes: the CSP allows no inline ones.
    if (k.startsWith("on") || k === "style") throw new Error(`el: attribute ${k} is not allowed`);
    node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, children);
  return node;
}

export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

export function clear(node: Node): void {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function on<T extends HTMLElement>(node: T, type: string, handler: (e: Event) => void): T {
  node.addEventListener(type, handler);
  return node;
}

export const badge = (text: string) => el("span", { class: `badge ${text}` }, text);

export function table(headers: string[], rows: Child[][], empty = "Nothing yet."): HTMLElement {
  if (rows.length === 0) return el("p", { class: "muted" }, empty);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))),
    ),
  );
}

export function card(title: string, ...children: Child[]): HTMLElement {
  return el("section", { class: "card" }, el("h2", {}, title), ...children);
}

/** Counts as label/value rows with a bar each, largest first. */
export function countRows(counts: Map<string, number>, total: number, link?: (key: string) => string): HTMLElement {
  const rows = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (rows.length === 0) return el("p", { class: "muted" }, "None.");
  return el(
    "div",
    { class: "rows" },
    ...rows.map(([k, n]) => {
      const fill = el("span", { class: "fill" });
      fill.style.width = `${total > 0 ? (100 * n) / total : 0}%`;
      return el(
        "div",
        {},
        el("div", { class: "row" }, link ? el("a", { href: link(k) }, k) : el("span", {}, k), el("span", {}, n)),
        el("div", { class: "bar" }, fill),
      );
    }),
  );
}

export const fmtTime = (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleString() : "—");
export const fmtBytes = (n: number | null | undefined) =>
  n === null || n === undefined
    ? "—"
    : n >= 1 << 20
      ? `${(n / (1 << 20)).toFixed(1)} MiB`
      : n >= 1024
        ? `${(n / 1024).toFixed(1)} KiB`
        : `${n} B`;

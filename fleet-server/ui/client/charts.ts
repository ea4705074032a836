import { el } from "./dom.js";

/** Hand-written SVG line charts (no chart library: nothing to load from elsewhere, CSP-clean). */
export interface Series {
  name: string;
  points: [number, number][];
}

const NS = "http://www.w3.org/2000/svg";
const W = 600;
const H = 200;
const PAD = { l: 48, r: 10, t: 10, b: 24 };

function svg(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A time-series chart: x in epoch ms, one polyline per series, four horizontal grid lines. */
export function lineChart(title: string, series: Series[], fmt: (y: number) => string, id?: string): HTMLElement {
  const all = series.flatMap((s) => s.points);
  const figure = el("figure", { class: "card chart-card", "data-chart": id ?? title });
  figure.appendChild(el("figcaption", {}, el("h2", {}, title)));
  if (all.length === 0) {
    figure.appendChild(el("p", { class: "muted" }, "No samples yet."));
    return figure;
  }
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 1);
  const yMax = Math.max(...ys, 0) * 1.1 || 1;
  const sx = (x: number) => PAD.l + ((x - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const sy = (y: number) => H - PAD.b - (y / yMax) * (H - PAD.t - PAD.b);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  for (let i = 0; i <= 4; i++) {
    const y = (yMax * i) / 4;
    root.appendChild(svg("line", { class: "axis", x1: PAD.l, x2: W - PAD.r, y1: sy(y), y2: sy(y) }));
    root.appendChild(svg("text", { class: "grid-label", x: 2, y: sy(y) + 3 }, fmt(y)));
  }
  const t = (ms: number) => new Date(ms).toLocaleTimeString();
  root.appendChild(svg("text", { class: "grid-label", x: PAD.l, y: H - 6 }, t(x0)));
  root.appendChild(svg("text", { class: "grid-label", x: W - PAD.r - 60, y: H - 6 }, t(x1)));
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const pts = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    const cls = `series s${i % 6}`;
    root.appendChild(svg("polyline", { class: cls, points: pts, "data-series": s.name }));
    if (s.points.length === 1) {
      const [x, y] = s.points[0]!;
      root.appendChild(svg("circle", { class: cls, cx: sx(x), cy: sy(y), r: 3 }));
    }
  });
  figure.appendChild(root);
  figure.appendChild(
    el(
      "div",
      { class: "legend" },
      ...series.map((s, i) => el("span", {}, el("span", { class: `sw s${i % 6}` }), s.name)),
    ),
  );
  return figure;
}

/** The q-quantile of sorted values (nearest rank). */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Groups `items` into at most `buckets` equal time slices; `f` summarises a non-empty slice. */
export function bucketed<T>(
  items: T[],
  ts: (t: T) => number,
  buckets: number,
  f: (slice: T[]) => number,
): [number, number][] {
  if (items.length === 0) return [];
  const t0 = Math.min(...items.map(ts));
  const t1 = Math.max(...items.map(ts));
  const width = Math.max(1, (t1 - t0) / buckets);
  const slices = new Map<number, T[]>();
  for (const it of items) {
    const k = Math.min(buckets - 1, Math.floor((ts(it) - t0) / width));
    const list = slices.get(k) ?? [];
    list.push(it);
    slices.set(k, list);
  }
  return [...slices.entries()].sort((a, b) => a[0] - b[0]).map(([k, slice]) => [t0 + (k + 0.5) * width, f(slice)]);
}

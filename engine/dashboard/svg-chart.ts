/*
 * svg-chart.ts — line charts drawn on the server as SVG markup.
 *
 * Why not a chart library: an SVG built here is part of the page, so it needs
 * no script (the CSP allows none inline and the dashboard ships one small
 * file), no asset to serve, nothing from a CDN (a closed network sees the
 * same page), and it prints and screenshots as it is. The figures are exact
 * (each point carries its value in `data-value` and a `<title>` tooltip the
 * browser shows on hover), and every chart has its table beside it.
 *
 * Colours and strokes come from classes (`s-<series>`, `threshold`) in
 * dashboard.css: the CSP forbids inline `style`, and classes keep the palette
 * in one place. Everything here is escaped by html.ts. The drawing scales with
 * its box (viewBox, width 100%), so it fits a 360 px phone.
 * Side effects: none.
 */
import { html, type Html } from './html.js';

export interface Series {
  /** The class suffix (`s-<name>`) and the `data-series` value. */
  name: string;
  label: string;
  values: readonly number[];
}

export interface Threshold {
  value: number;
  label: string;
  /** `limit`: the line not to cross (drawn solid); `advice`: where to stay below (dashed). */
  kind: 'limit' | 'advice';
}

export interface ChartInput {
  id: string;
  /** Read by screen readers (the SVG is role="img"). */
  title: string;
  /** One per point, left to right (days, hours). */
  labels: readonly string[];
  /** Short x-axis labels; default: the labels. */
  ticks?: readonly string[];
  series: readonly Series[];
  thresholds?: readonly Threshold[];
  /** How values read on the axis and in tooltips; default: whole numbers. */
  format?: (v: number) => string;
  /** Counts: the axis steps by whole numbers (no "0.25 messages"). Default: true without a `format`. */
  whole?: boolean;
}

/** User units; the text is 11 of them: about 10 px where a chart is 360 px wide (a phone, a third of a desktop). */
const W = 400;
const H = 200;
const LEFT = 46;
const RIGHT = 8;
const TOP = 10;
const BOTTOM = 22;
/** Horizontal grid lines (besides zero): enough to read a value, few enough to stay quiet. */
const GRID_LINES = 4;
/** At most this many x labels: 14 days or 24 hours would overlap at phone width. */
const MAX_X_LABELS = 8;

/** The smallest 1, 2 or 5 × 10^k at or above v: an axis top people can read. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const r1 = (n: number): string => (Math.round(n * 10) / 10).toString();

export function lineChart(c: ChartInput): Html {
  const fmt = c.format ?? ((v: number) => Math.round(v).toLocaleString('en'));
  const n = c.labels.length;
  // A readable step (1, 2 or 5 × 10^k) times the grid lines: every grid label is a round figure.
  const highest = Math.max(0, ...c.series.flatMap((s) => s.values), ...(c.thresholds ?? []).map((t) => t.value * 1.25));
  const rawStep = niceMax(highest / GRID_LINES);
  const step = (c.whole ?? !c.format) ? Math.max(1, rawStep) : rawStep;
  const top = step * GRID_LINES;
  const plotW = W - LEFT - RIGHT;
  const plotH = H - TOP - BOTTOM;
  const x = (i: number): number => LEFT + (n <= 1 ? plotW / 2 : (i * plotW) / (n - 1));
  const y = (v: number): number => TOP + plotH - (Math.max(0, v) / top) * plotH;
  const grid = Array.from({ length: GRID_LINES + 1 }, (_, k) => step * k);
  const every = Math.max(1, Math.ceil(n / MAX_X_LABELS));
  const ticks = c.ticks ?? c.labels;
  return html`<svg class="chart" id="${c.id}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${c.title}" preserveAspectRatio="xMidYMid meet">
<title>${c.title}</title>
<g class="grid">${grid.map((v) => html`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${r1(y(v))}" y2="${r1(y(v))}"/><text class="axis" x="${LEFT - 6}" y="${r1(y(v) + 4)}" text-anchor="end">${fmt(v)}</text>`)}</g>
<g class="x-axis">${c.labels.map((_, i) => i % every === 0 && html`<text class="axis" x="${r1(x(i))}" y="${H - 6}" text-anchor="middle">${ticks[i] ?? ''}</text>`)}</g>
${(c.thresholds ?? []).map(
    (t) => html`<g class="threshold ${t.kind}" data-threshold="${t.value}"><line x1="${LEFT}" x2="${W - RIGHT}" y1="${r1(y(t.value))}" y2="${r1(y(t.value))}"/><text x="${W - RIGHT - 4}" y="${r1(y(t.value) - 4)}" text-anchor="end">${t.label}</text></g>`,
  )}
${c.series.map(
    (s) => html`<g class="series s-${s.name}" data-series="${s.name}"><polyline points="${s.values.map((v, i) => `${r1(x(i))},${r1(y(v))}`).join(' ')}"/>${s.values.map(
      (v, i) => html`<circle cx="${r1(x(i))}" cy="${r1(y(v))}" r="2.5" data-label="${c.labels[i]}" data-value="${v}"><title>${s.label} ${c.labels[i]}: ${fmt(v)}</title></circle>`,
    )}</g>`,
  )}
</svg>
<ul class="legend">${c.series.map((s) => html`<li class="s-${s.name}"><span class="swatch"></span>${s.label}</li>`)}${(c.thresholds ?? []).map((t) => html`<li class="threshold ${t.kind}"><span class="swatch"></span>${t.label}</li>`)}</ul>`;
}

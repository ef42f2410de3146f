/*
 * svg-chart.ts: the axis steps by round figures (whole ones for counts), each point
 * carries its value where the chart draws it, threshold lines sit at their value,
 * and data in labels is escaped (a tag or an account could be anything).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lineChart, niceMax } from '../../../engine/dashboard/svg-chart.js';

test('niceMax: the smallest 1, 2 or 5 × 10^k at or above a value', () => {
  assert.deepEqual([0, 0.3, 1, 1.2, 3, 7, 12, 4_999, 0.00094].map(niceMax), [1, 0.5, 1, 2, 5, 10, 20, 5_000, 0.001]);
});

test('counts: whole-number grid labels, points at their values, the last point highest when its value is', () => {
  const svg = lineChart({ id: 'c', title: 'Counts', labels: ['d1', 'd2', 'd3'], series: [{ name: 'accepted', label: 'accepted', values: [0, 1, 3] }] }).value;
  const grid = [...svg.matchAll(/<text class="axis" x="\d+" y="[\d.]+" text-anchor="end">([^<]+)<\/text>/g)].map((m) => m[1]);
  assert.deepEqual(grid, ['0', '1', '2', '3', '4'], 'a step of 1 for a top of 3: never "0.25 messages"');
  const points = [...svg.matchAll(/cy="([\d.]+)" r="2.5" data-label="(d\d)" data-value="(\d+)"/g)].map((m) => ({ y: Number(m[1]), label: m[2], value: Number(m[3]) }));
  assert.deepEqual(points.map((p) => [p.label, p.value]), [['d1', 0], ['d2', 1], ['d3', 3]]);
  assert.ok(points[2]!.y < points[1]!.y && points[1]!.y < points[0]!.y, 'higher values are drawn higher (smaller y)');
  assert.match(svg, /<title>accepted d3: 3<\/title>/, 'a tooltip with the exact figure');
});

test('rates: thresholds drawn at their value, the axis reaches past the highest line', () => {
  const pct = (v: number): string => `${(v * 100).toFixed(2)}%`;
  const svg = lineChart({ id: 'r', title: 'Rates', labels: ['a', 'b'], series: [{ name: 'complained', label: 'complaint rate', values: [0, 0.002] }], thresholds: [{ value: 0.003, label: 'limit 0.3%', kind: 'limit' }], format: pct }).value;
  const y = (v: string): number => Number(new RegExp(`<text class="axis" x="\\d+" y="([\\d.]+)" text-anchor="end">${v.replace('.', '\\.')}</text>`).exec(svg)![1]) - 4;
  const line = Number(/data-threshold="0.003"><line x1="\d+" x2="\d+" y1="([\d.]+)"/.exec(svg)![1]);
  assert.ok(Math.abs(line - y('0.30%')) < 0.2, `the 0.3% line (${line}) at the 0.30% grid line (${y('0.30%')})`);
  assert.match(svg, /text-anchor="end">0\.40%<\/text>/, 'the top grid line is above the threshold');
});

test('labels and titles are escaped', () => {
  const svg = lineChart({ id: 'x', title: '<b>t</b>', labels: ['"><script>alert(1)</script>'], series: [{ name: 'accepted', label: '<i>', values: [1] }] }).value;
  assert.doesNotMatch(svg, /<script>|<b>|<i>/);
  assert.match(svg, /&lt;script&gt;/);
});

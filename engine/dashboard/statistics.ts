/*
 * statistics.ts — GET /statistics: what happened to the mail, over the same
 * counters as GET /api/stats (events/stats.ts: Stats.query, ratesOf, topRows;
 * no query of its own).
 *
 *   GET /statistics[?account=]                   the page
 *   GET /statistics/<table>.csv[?account=]       one table as CSV, <table> one of
 *                                                daily, hourly, tags, senders, domains
 *
 * The page: the last 14 days per UTC day and today by UTC hour (accepted,
 * delivered, bounced, complained, opened, clicked) as server-drawn SVG charts
 * (svg-chart.ts) with their tables; the complaint and bounce rates per day
 * with the providers' lines drawn in (PROVIDER_LINES); the top tags, senders
 * and recipient domains of the 14 days. Each table downloads as CSV with
 * every metric, in the format of /api/stats.csv (the ranked tables in full,
 * not only their top rows).
 *
 * The operator sees every account together or picks one; an account session
 * sees its own (accountScope, as the API: naming another is 403).
 * Side effects: LevelDB reads (a statistics fold first, as every query).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PostinoError } from '../../common/errors.js';
import { accountScope } from '../../common/http-server.js';
import { statsCsv } from '../events/stats-routes.js';
import { fullRow, ratesOf, topRows, type GroupBy, type Metric, type StatsCounters, type StatsRow } from '../events/stats.js';
import type { DashboardContext } from './context.js';
import { html, url, type Html } from './html.js';
import { field, layout, sendHtml } from './page.js';
import type { Session } from './sessions.js';
import { lineChart, type Threshold } from './svg-chart.js';

const DAY_MS = 86_400_000;
/** The history charted: two weeks show a weekly rhythm twice, and what changed since last week. */
const DAYS = 14;
/** Rows shown in each ranked table on the page (the CSV has them all). */
const TOP = 10;

/** What the charts and tables show, in this order (the CSV has every metric of stats.ts). */
const SHOWN: ReadonlyArray<{ metric: Metric; label: string }> = [
  { metric: 'accepted', label: 'accepted' },
  { metric: 'delivered', label: 'delivered' },
  { metric: 'bounced', label: 'bounced' },
  { metric: 'complained', label: 'complained' },
  { metric: 'opened', label: 'opened' },
  { metric: 'clicked', label: 'clicked' },
];

/**
 * The lines the mailbox providers draw, on the rate charts:
 *  - complaint rate: Gmail's sender guidelines (support.google.com/a/answer/81126, for every
 *    sender since February 2024) ask to keep the spam rate reported in Postmaster Tools below
 *    0.1% and never to reach 0.3%; Yahoo's sender best practices (senders.yahooinc.com) set the
 *    same 0.3% line. Postino's reputation brake warns and pauses at the same two figures
 *    (events.brake.complaintRate).
 *  - bounce rate: no mailbox provider publishes one. 2% is the usual guidance of sending
 *    services (Amazon SES asks for under 2% and reviews an account at 5%), and the brake's
 *    hard-bounce defaults (events.brake.hardBounceRate: 2% warn, 5% pause) use it too.
 */
export const PROVIDER_LINES: Record<'complaintRate' | 'bounceRate', readonly Threshold[]> = {
  complaintRate: [
    { value: 0.001, label: 'Gmail: stay below 0.1%', kind: 'advice' },
    { value: 0.003, label: 'Gmail/Yahoo limit 0.3%', kind: 'limit' },
  ],
  bounceRate: [
    { value: 0.02, label: 'keep under 2%', kind: 'advice' },
    { value: 0.05, label: 'review at 5% (SES)', kind: 'limit' },
  ],
};

type Table = 'daily' | 'hourly' | 'tags' | 'senders' | 'domains';
const TABLES: Record<Table, { groupBy: GroupBy; title: string }> = {
  daily: { groupBy: 'day', title: 'Last 14 days' },
  hourly: { groupBy: 'hour', title: 'Today by hour' },
  tags: { groupBy: 'tag', title: 'Top tags' },
  senders: { groupBy: 'sender', title: 'Top senders' },
  domains: { groupBy: 'domain', title: 'Top recipient domains' },
};

const pct = (v: number): string => `${(v * 100).toFixed(v > 0 && v < 0.01 ? 2 : 1)}%`;

/** The UTC day (or hour) keys from `from` to `to`, as stats.ts names its buckets. */
function buckets(from: number, to: number, hourly: boolean): string[] {
  const step = hourly ? 3_600_000 : DAY_MS;
  const out: string[] = [];
  for (let t = from; t <= to; t += step) out.push(new Date(t).toISOString().slice(0, hourly ? 13 : 10));
  return out;
}

/** Every bucket of the range, with zeros where nothing was counted (a quiet day is a point on the chart). */
function filled(rows: readonly StatsRow[], keys: readonly string[]): StatsRow[] {
  const by = new Map(rows.map((r) => [r.key, r]));
  return keys.map((k) => by.get(k) ?? fullRow(k, {}));
}

interface Ranges {
  /** Midnight UTC, 13 days ago: the first of the 14 days. */
  daysFrom: number;
  /** Midnight UTC today. */
  todayFrom: number;
  now: number;
}

function ranges(now: number): Ranges {
  const todayFrom = Math.floor(now / DAY_MS) * DAY_MS;
  return { daysFrom: todayFrom - (DAYS - 1) * DAY_MS, todayFrom, now };
}

/** One table's rows, as the page and its CSV show them. */
async function tableRows(stats: StatsCounters, table: Table, account: string | undefined, r: Ranges): Promise<StatsRow[]> {
  const { groupBy } = TABLES[table];
  const hourly = table === 'hourly';
  const from = hourly ? r.todayFrom : r.daysFrom;
  const result = await stats.query({ from, to: r.now, groupBy, account });
  if (table === 'daily' || table === 'hourly') return filled(result.rows, buckets(from, hourly ? r.todayFrom + DAY_MS - 1 : r.now, hourly));
  return topRows(result.rows, 'accepted');
}

function countsTable(id: string, first: string, rows: readonly StatsRow[], rates: boolean): Html {
  return html`<div class="scroll"><table class="list numbers" id="${id}">
<thead><tr><th>${first}</th>${SHOWN.map((s) => html`<th>${s.label}</th>`)}${rates && html`<th>bounce rate</th><th>complaint rate</th>`}</tr></thead>
<tbody>${rows.map((row) => {
    const r = ratesOf(row);
    return html`<tr data-key="${row.key}"><td>${row.key}</td>${SHOWN.map((s) => html`<td data-metric="${s.metric}">${row[s.metric]}</td>`)}${rates && html`<td>${pct(r.bounceRate)}</td><td>${pct(r.complaintRate)}</td>`}</tr>`;
  })}</tbody></table></div>`;
}

function csvLink(table: Table, account: string | undefined, node: boolean): Html {
  return html`<a class="csv" href="${url(`/statistics/${table}.csv`, { account: node ? account : undefined })}" download>CSV</a>`;
}

function rateClass(v: number, lines: readonly Threshold[]): string {
  const limit = lines.find((l) => l.kind === 'limit')!.value;
  const advice = lines.find((l) => l.kind === 'advice')!.value;
  return v >= limit ? 'bad' : v >= advice ? 'warn' : 'good';
}

async function page(ctx: DashboardContext, stats: StatsCounters, session: Session, account: string | undefined): Promise<Html> {
  const node = session.principal.kind === 'node';
  const r = ranges(Date.now());
  const [daily, hourly, tags, senders, domains] = await Promise.all([
    tableRows(stats, 'daily', account, r),
    tableRows(stats, 'hourly', account, r),
    tableRows(stats, 'tags', account, r),
    tableRows(stats, 'senders', account, r),
    tableRows(stats, 'domains', account, r),
  ]);
  const total: Record<string, number> = {};
  for (const row of daily) for (const s of SHOWN) total[s.metric] = (total[s.metric] ?? 0) + row[s.metric];
  const rates14 = ratesOf(total);
  const dayLabels = daily.map((d) => d.key);
  const dayTicks = dayLabels.map((d) => d.slice(5));
  const hourLabels = hourly.map((h) => `${h.key}:00`);
  const hourTicks = hourly.map((h) => h.key.slice(11));
  const series = (rows: readonly StatsRow[]) => SHOWN.map((s) => ({ name: s.metric, label: s.label, values: rows.map((row) => row[s.metric]) }));
  const dailyRates = daily.map((d) => ratesOf(d));
  const ranked = (table: 'tags' | 'senders' | 'domains', first: string, rows: readonly StatsRow[]): Html =>
    html`<div class="card"><h2>${TABLES[table].title} <small>14 days, by accepted</small> ${csvLink(table, account, node)}</h2>
${rows.length ? countsTable(`table-${table}`, first, rows.slice(0, TOP), true) : html`<p class="hint" id="${`table-${table}`}">Nothing counted yet.</p>`}</div>`;

  const known = [...ctx.delivery.accounts].sort();
  return html`${node &&
    html`<form method="get" action="/statistics" class="card search" id="stats-account">
<label>Account<select name="account"><option value="">all accounts</option>${known.map((a) => html`<option${a === account ? html` selected` : ''}>${a}</option>`)}</select></label>
<button type="submit">Show</button></form>`}
<p class="hint">${account ? html`Account <strong>${account}</strong>` : 'All accounts'}; times in UTC.</p>
<section class="card" id="rates-summary"><h2>Rates <small>last 14 days</small></h2>
<table class="kv">
<tr><th>delivered</th><td id="total-delivered">${total.delivered ?? 0}</td></tr>
<tr><th>bounce rate <small>bounced / (delivered + bounced)</small></th><td id="bounce-rate" class="${rateClass(rates14.bounceRate, PROVIDER_LINES.bounceRate)}">${pct(rates14.bounceRate)}</td></tr>
<tr><th>complaint rate <small>complained / delivered</small></th><td id="complaint-rate" class="${rateClass(rates14.complaintRate, PROVIDER_LINES.complaintRate)}">${pct(rates14.complaintRate)}</td></tr>
</table></section>
<section class="cards charts">
<div class="card"><h2>${TABLES.daily.title} <small>per UTC day</small> ${csvLink('daily', account, node)}</h2>
${lineChart({ id: 'chart-daily', title: 'Messages per day, last 14 days', labels: dayLabels, ticks: dayTicks, series: series(daily) })}
<details><summary>Table</summary>${countsTable('table-daily', 'day', daily, true)}</details></div>
<div class="card"><h2>${TABLES.hourly.title} <small>per UTC hour</small> ${csvLink('hourly', account, node)}</h2>
${lineChart({ id: 'chart-hourly', title: 'Messages per hour today', labels: hourLabels, ticks: hourTicks, series: series(hourly) })}
<details><summary>Table</summary>${countsTable('table-hourly', 'hour', hourly, false)}</details></div>
<div class="card"><h2>Complaint rate <small>per day</small></h2>
${lineChart({ id: 'chart-complaint-rate', title: 'Complaint rate per day, with the providers’ limits', labels: dayLabels, ticks: dayTicks, series: [{ name: 'complained', label: 'complaint rate', values: dailyRates.map((x) => x.complaintRate) }], thresholds: PROVIDER_LINES.complaintRate, format: pct })}</div>
<div class="card"><h2>Bounce rate <small>per day</small></h2>
${lineChart({ id: 'chart-bounce-rate', title: 'Bounce rate per day, with the usual limits', labels: dayLabels, ticks: dayTicks, series: [{ name: 'bounced', label: 'bounce rate', values: dailyRates.map((x) => x.bounceRate) }], thresholds: PROVIDER_LINES.bounceRate, format: pct })}</div>
</section>
<section class="ranked">
${ranked('tags', 'tag', tags)}
${ranked('senders', 'sender', senders)}
${ranked('domains', 'recipient domain', domains)}
</section>`;
}

export function registerStatistics(app: FastifyInstance, ctx: DashboardContext): void {
  const cfg = { config: { public: true } };
  const statsOf = (): StatsCounters => {
    if (!ctx.stats) throw new PostinoError('NOT_FOUND', 'this node keeps no statistics');
    return ctx.stats;
  };
  /** The account asked for (an account session: its own; another is 403); undefined = all (operator). */
  const accountOf = (req: FastifyRequest): string | undefined => {
    const a = accountScope(req, field(req.query, 'account'));
    if (a !== undefined && req.principal.kind === 'node' && !ctx.delivery.accounts.has(a)) throw new PostinoError('BAD_REQUEST', `unknown account "${a}"`);
    return a;
  };

  app.get('/statistics', cfg, async (req, reply) => {
    const session = req.dashboardSession!;
    const body = await page(ctx, statsOf(), session, accountOf(req));
    return sendHtml(reply, layout({ title: 'Statistics', session, active: 'statistics', captured: ctx.capture !== undefined && session.principal.kind === 'node', body }));
  });

  app.get('/statistics/:table', cfg, async (req, reply): Promise<FastifyReply> => {
    const name = (req.params as { table: string }).table.replace(/\.csv$/, '');
    if (!Object.hasOwn(TABLES, name) || !(req.params as { table: string }).table.endsWith('.csv')) throw new PostinoError('NOT_FOUND', 'no such table');
    const table = name as Table;
    const account = accountOf(req);
    const rows = await tableRows(statsOf(), table, account, ranges(Date.now()));
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="statistics-${table}${account ? `-${account}` : ''}.csv"`)
      .send(statsCsv(TABLES[table].groupBy, rows));
  });
}

/*
 * overview.ts — GET / (the queue, the relays, the kill-switch) and
 * POST /pause, POST /resume (the switch, with a reason and who pulled it).
 *
 * The operator sees the node: the delivery queue by state with its drain
 * estimate and rate (delivery/queue-status.ts), the relays up or down, the
 * global switch and each account's. An account sees its own share of the
 * queue, its own switch and whether the relays are up, nothing of others.
 * Both see the reputation brake's limits and the rates it judges (an account its
 * own), and the forwarders and applications that sent to this node (client
 * address and account, engine/forwarders/forwarder-log.ts): last seen, the last
 * message accepted, how many today; an account only its own. Not shown: a
 * forwarder's spool depth (the relay session does not report it).
 * Side effects: a scan of the delivery queue's records per view (as /api/queue).
 */
import type { FastifyInstance } from 'fastify';
import type { DurableQueue } from '../../common/durable-queue.js';
import { PostinoError } from '../../common/errors.js';
import { accountScope } from '../../common/http-server.js';
import type { DeliveryMeta } from '../delivery/delivery-record.js';
import type { PauseDetail } from '../delivery/delivery-pause.js';
import type { DashboardContext } from './context.js';
import { html, type Html } from './html.js';
import { csrfField, field, layout, seconds, seeOther, sendHtml, when } from './page.js';
import type { Session } from './sessions.js';

/** Forwarder rows on the overview: the most recently seen; a node with more has a fleet to monitor elsewhere. */
const MAX_FORWARDERS_SHOWN = 100;
/** Accounts on the brake card: each costs a statistics query per view; a node with more has them in /api/stats. */
const MAX_BRAKE_ROWS = 50;
/** A reason longer than this is cut: it is a note for colleagues, not a document. */
const MAX_REASON = 500;

/** One account's copies in the delivery queue: waiting, being worked on (leased), deferred after a 4xx. */
async function accountQueue(queue: DurableQueue<DeliveryMeta>, account: string): Promise<{ total: number; deferred: number; inProgress: number }> {
  const n = { total: 0, deferred: 0, inProgress: 0 };
  for await (const rec of queue.records()) {
    if (rec.meta.account !== account) continue;
    n.total++;
    if (rec.leasedUntil > 0) n.inProgress++;
    else if (rec.meta.lastError) n.deferred++;
  }
  return n;
}

function switchRow(session: Session, label: string, account: string | undefined, detail: PauseDetail | null | undefined): Html {
  const hidden = account === undefined ? '' : html`<input type="hidden" name="account" value="${account}">`;
  return html`<tr data-switch="${account ?? '*'}">
<th scope="row">${label}</th>
<td>${detail ? html`<strong class="bad">paused</strong> <small>since ${when(detail.at)}${detail.by && html` by ${detail.by}`}${detail.reason && html`: “${detail.reason}”`}</small>` : html`<span class="good">sending</span>`}</td>
<td>${detail
    ? html`<form method="post" action="/resume">${csrfField(session)}${hidden}<button type="submit">Resume</button></form>`
    : html`<form method="post" action="/pause" class="inline">${csrfField(session)}${hidden}<input name="reason" placeholder="reason" maxlength="${MAX_REASON}" aria-label="reason"><button type="submit" class="danger">Pause</button></form>`}</td>
</tr>`;
}

async function nodeView(ctx: DashboardContext, session: Session): Promise<Html> {
  const st = await ctx.delivery.status();
  const details = ctx.delivery.killSwitch.details();
  const up = st.relays.filter((r) => r.state === 'up').length;
  return html`<section class="cards">
<div class="card"><h2>Delivery queue</h2>
<table class="kv">
<tr><th>copies queued</th><td id="queue-total">${st.total}</td></tr>
<tr><th>waiting</th><td id="queue-queued">${st.states.queued}</td></tr>
<tr><th>ready (in a lane)</th><td>${st.states.ready}</td></tr>
<tr><th>sending</th><td>${st.states.sending}</td></tr>
<tr><th>deferred</th><td id="queue-deferred">${st.states.deferred}</td></tr>
<tr><th>intake (before rewrap)</th><td id="queue-intake">${ctx.intake.size}</td></tr>
<tr><th>oldest</th><td>${seconds(st.oldestAgeSeconds)}</td></tr>
<tr><th>delivery rate</th><td id="queue-rate">${st.ratePerSecond}/s</td></tr>
<tr><th>drain estimate</th><td id="queue-drain">${seconds(st.estimatedDrainSeconds)}</td></tr>
</table></div>
<div class="card"><h2>Relays <small>${up} of ${st.relays.length} up</small></h2>
<div class="scroll"><table>
<thead><tr><th>relay</th><th>state</th><th>sent</th><th>why down</th></tr></thead>
<tbody>${st.relays.map((r) => html`<tr><td>${r.relay}</td><td class="${r.state === 'up' ? 'good' : 'bad'}">${r.state}${r.downSince && html` since ${when(r.downSince)}`}</td><td>${r.sent}</td><td>${r.lastError ?? ''}</td></tr>`)}</tbody>
</table></div></div>
</section>
<section class="card"><h2>Kill-switch</h2>
<p class="hint">Pausing stops delivery at once; the listener keeps accepting and copies wait in the queue.</p>
<div class="scroll"><table class="switches">
<tbody>
${switchRow(session, 'All accounts (global)', undefined, details.global)}
${[...ctx.delivery.accounts].sort().map((a) => switchRow(session, a, a, details.accounts[a]))}
</tbody></table></div></section>
${st.domains.length > 0 && html`<section class="card"><h2>Queue by destination</h2><div class="scroll"><table>
<thead><tr><th>domain</th><th>copies</th><th>ready</th><th>sending</th><th>deferred</th></tr></thead>
<tbody>${st.domains.slice(0, 50).map((d) => html`<tr><td>${d.domain}</td><td>${d.total}</td><td>${d.ready}</td><td>${d.sending}</td><td>${d.deferred}</td></tr>`)}</tbody>
</table></div></section>`}
${await brakeCard(ctx, [...ctx.delivery.accounts].sort())}
${await nodesCard(ctx)}
${forwardersCard(ctx, undefined)}`;
}

/** A rate, and its class against the brake's warn and pause limits. */
function rateCell(rate: number, limits: { warn: number; pause: number }): Html {
  const cls = rate >= limits.pause ? 'bad' : rate >= limits.warn ? 'warn' : 'good';
  return html`<td class="${cls}">${(rate * 100).toFixed(2)}%</td>`;
}

/**
 * The reputation brake: its limits, and per account the rates it judges over its window
 * (since a resume, if any) and whether it paused the account, when and why.
 */
async function brakeCard(ctx: DashboardContext, accounts: readonly string[]): Promise<Html> {
  const brake = ctx.brake;
  if (!brake) return html``;
  const c = brake.config;
  const paused = new Map(brake.state().map((s) => [s.account, s]));
  // Paused accounts first, then the rest up to a page of rows: one statistics query each.
  const shown = [...accounts.filter((a) => paused.has(a)), ...accounts.filter((a) => !paused.has(a))].slice(0, MAX_BRAKE_ROWS);
  const rows = await Promise.all(shown.map(async (a) => ({ account: a, f: await brake.figures(a), p: paused.get(a) })));
  return html`<section class="card" id="brake"><h2>Reputation brake <small>${c.enabled ? `last ${c.windowHours} h` : 'off'}</small></h2>
<p class="hint">Pauses an account at a complaint rate of ${(c.complaintRate.pause * 100).toFixed(2)}%, hard bounces of ${(c.hardBounceRate.pause * 100).toFixed(1)}% or blocks of ${(c.blockRate.pause * 100).toFixed(1)}%
(warns at ${(c.complaintRate.warn * 100).toFixed(2)}%, ${(c.hardBounceRate.warn * 100).toFixed(1)}%, ${(c.blockRate.warn * 100).toFixed(1)}%), once ${c.minMessages} messages have an outcome in the window.</p>
<div class="scroll"><table class="numbers">
<thead><tr><th>account</th><th>outcomes</th><th>complaints</th><th>hard bounces</th><th>blocks</th><th>brake</th></tr></thead>
<tbody>${rows.map(({ account, f, p }) => html`<tr data-brake="${account}"><td>${account}</td><td>${f.sent}</td>${rateCell(f.complaintRate, c.complaintRate)}${rateCell(f.hardBounceRate, c.hardBounceRate)}${rateCell(f.blockRate, c.blockRate)}
<td>${p ? html`<strong class="bad">paused</strong> <small>${when(p.at)}: ${p.reason ?? ''}</small>` : f.sent < c.minMessages ? html`<small>too few to judge</small>` : html`<span class="good">watching</span>`}</td></tr>`)}</tbody>
</table></div></section>`;
}

/** Every node of the installation (several share a PostgreSQL), a silent one with when it was last heard from. */
async function nodesCard(ctx: DashboardContext): Promise<Html> {
  const list = (await ctx.nodes?.list()) ?? [];
  if (list.length === 0) return html``;
  return html`<section class="card" id="nodes"><h2>Nodes <small>${list.filter((n) => n.state === 'up').length} of ${list.length} up</small></h2>
<div class="scroll"><table class="numbers">
<thead><tr><th>node</th><th>state</th><th>intake</th><th>queued</th><th>failed</th><th>paused</th></tr></thead>
<tbody>${list.map((n) => html`<tr data-node="${n.node}"><td>${n.node}${n.self && html` <small>(this node)</small>`}</td><td class="${n.state === 'up' ? 'good' : 'bad'}">${n.state}${n.state === 'silent' && html` <small>since ${when(n.seenAt)}</small>`}</td><td>${n.intake}</td><td>${n.queued}</td><td>${n.failed}</td><td>${n.pausedGlobal ? 'all accounts' : n.pausedAccounts ? `${n.pausedAccounts} accounts` : 'no'}${n.secretsDiffer && html` <strong class="bad" title="token or pseudonym keys differ from this node's: copy data/secrets">secrets differ</strong>`}</td></tr>`)}</tbody>
</table></div></section>`;
}

/** Forwarders (and applications) by client address and account, most recently seen first. */
function forwardersCard(ctx: DashboardContext, account: string | undefined): Html {
  const list = ctx.forwarders?.list(account).slice(0, MAX_FORWARDERS_SHOWN) ?? [];
  return html`<section class="card"><h2>Forwarders and senders <small>by client address</small></h2>
${list.length === 0
    ? html`<p class="hint" id="no-forwarders">No message accepted yet${ctx.forwarders ? '' : ' (not recorded on this node)'}.</p>`
    : html`<div class="scroll"><table class="list" id="forwarders">
<thead><tr><th>client address</th>${account === undefined && html`<th>account</th>`}<th>kind</th><th>last seen (UTC)</th><th>today</th><th>total</th><th>last message</th></tr></thead>
<tbody>${list.map((f) => html`<tr data-address="${f.address}" data-account="${f.account}"><td>${f.address}</td>${account === undefined && html`<td>${f.account}</td>`}<td>${f.forwarded ? 'forwarder' : 'application'}</td><td class="last-seen">${when(f.lastSeenAt)}</td><td class="today">${f.today}</td><td>${f.total}</td>
<td><a href="${`/messages/${encodeURIComponent(f.lastMessageId ? f.lastMessageId.replace(/^<|>$/g, '') : f.lastQueueId)}`}">${f.lastMessageId ?? f.lastQueueId}</a> <small>from ${f.lastSender || '<>'}</small></td></tr>`)}</tbody>
</table></div>`}
</section>`;
}

async function accountView(ctx: DashboardContext, session: Session, account: string): Promise<Html> {
  const q = await accountQueue(ctx.deliveryQueue, account);
  const details = ctx.delivery.killSwitch.details();
  const relays = ctx.delivery.pool.status();
  const up = relays.filter((r) => r.state === 'up').length;
  return html`<section class="cards">
<div class="card"><h2>Your queue</h2>
<table class="kv">
<tr><th>copies queued</th><td id="queue-total">${q.total}</td></tr>
<tr><th>being sent</th><td>${q.inProgress}</td></tr>
<tr><th>deferred</th><td id="queue-deferred">${q.deferred}</td></tr>
</table></div>
<div class="card"><h2>Relays</h2><p>${up} of ${relays.length} up${details.global && html`; <strong class="bad">delivery is paused for every account by the operator</strong>`}</p></div>
</section>
<section class="card"><h2>Kill-switch</h2>
<div class="scroll"><table class="switches"><tbody>${switchRow(session, account, account, details.accounts[account])}</tbody></table></div></section>
${await brakeCard(ctx, [account])}
${forwardersCard(ctx, account)}`;
}

export function registerOverview(app: FastifyInstance, ctx: DashboardContext): void {
  app.get('/', { config: { public: true } }, async (req, reply) => {
    const session = req.dashboardSession!;
    const p = session.principal;
    const body = p.kind === 'node' ? await nodeView(ctx, session) : await accountView(ctx, session, p.account);
    return sendHtml(reply, layout({ title: 'Overview', session, active: 'overview', captured: ctx.capture !== undefined && p.kind === 'node', body }));
  });

  /** The account a switch form names (an account session: its own); undefined = global (the operator only). */
  const target = (req: Parameters<typeof accountScope>[0]): string | undefined => {
    const a = accountScope(req, field(req.body, 'account'));
    if (a !== undefined && !ctx.delivery.accounts.has(a)) throw new PostinoError('NOT_FOUND', `no account "${a}"`);
    return a;
  };
  app.post('/pause', { config: { public: true } }, async (req, reply) => {
    const session = req.dashboardSession!;
    await ctx.delivery.killSwitch.pause(target(req), { reason: field(req.body, 'reason')?.slice(0, MAX_REASON), by: `${session.label} (dashboard)` });
    return seeOther(reply, '/');
  });
  app.post('/resume', { config: { public: true } }, async (req, reply) => {
    await ctx.delivery.killSwitch.resume(target(req));
    return seeOther(reply, '/');
  });
}

/*
 * webhooks.ts — the webhook endpoints in the dashboard, over the dispatcher's
 * own operations (events/webhooks.ts: list, deliveries, test, enable; the
 * same as /api/webhooks).
 *
 *   GET  /webhooks[?account=]      each endpoint: URL, the event types it takes, where it
 *                                  was defined, its state (enabled, failing since …, or
 *                                  disabled and why), backlog, and its last deliveries
 *                                  (status code, latency, error), newest first
 *   POST /webhooks/test            one signed `postino.test` POST now (account, id)
 *   POST /webhooks/enable          takes a disabled endpoint back into service (account, id)
 *
 * An account session sees and acts on its own endpoints only (accountScope:
 * naming another account is 403, another's endpoint id 404); the operator sees
 * every account's or picks one. Secrets are never shown (the API shows a new
 * endpoint's once). Side effects: HTTP POSTs (test), LevelDB writes (enable).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { PostinoError } from '../../common/errors.js';
import { accountScope } from '../../common/http-server.js';
import { RECENT_DELIVERIES, type DeliveryRecord, type EndpointView, type WebhookDispatcher } from '../events/webhooks.js';
import type { DashboardContext } from './context.js';
import { html, url, type Html } from './html.js';
import { csrfField, field, layout, seeOther, sendHtml, when } from './page.js';
import type { Session } from './sessions.js';

function stateOf(w: EndpointView): Html {
  if (w.disabled) return html`<strong class="bad">disabled</strong> <small>since ${when(w.disabled.at)}: ${w.disabled.reason}</small>`;
  if (w.pending?.failingSince)
    return html`<strong class="warn">failing</strong> <small>since ${when(w.pending.failingSince)}, ${w.pending.attempts} attempt${w.pending.attempts === 1 ? '' : 's'}${w.pending.lastError && html`; last: ${w.pending.lastError}`}${w.pending.nextAttemptAt && html`; next at ${when(w.pending.nextAttemptAt)}`}</small>`;
  return html`<span class="good">enabled</span>`;
}

function deliveriesTable(w: EndpointView, rows: readonly DeliveryRecord[]): Html {
  if (!rows.length) return html`<p class="hint">No deliveries yet.</p>`;
  return html`<div class="scroll"><table class="list deliveries">
<thead><tr><th>at (UTC)</th><th>what</th><th>status</th><th>latency</th><th>webhook-id</th><th>error</th></tr></thead>
<tbody>${rows.map(
    (d) => html`<tr data-kind="${d.kind}" data-status="${d.status ?? ''}" data-ok="${String(d.ok)}"><td>${when(d.at)}</td><td>${d.kind === 'test' ? 'test event' : `${d.events} event${d.events === 1 ? '' : 's'}`}</td>
<td class="${d.ok ? 'good' : 'bad'}">${d.status ?? 'no answer'}</td><td>${d.ms} ms</td><td><code>${d.webhookId}</code></td><td>${d.error ?? ''}</td></tr>`,
  )}</tbody></table></div>${rows.length > 0 && html`<p class="hint">${rows.length === 1 ? 'The last POST' : `The last ${rows.length} POSTs`} to ${w.id} (at most ${RECENT_DELIVERIES} are kept).</p>`}`;
}

function endpointCard(session: Session, hooks: WebhookDispatcher, w: EndpointView, node: boolean): Html {
  const hidden = html`${csrfField(session)}<input type="hidden" name="account" value="${w.account}"><input type="hidden" name="id" value="${w.id}">`;
  return html`<section class="card webhook" data-webhook="${w.id}" data-account="${w.account}">
<h2>${w.id}${node && html` <small>account ${w.account}</small>`}</h2>
<table class="kv">
<tr><th>URL</th><td class="url">${w.url}</td></tr>
<tr><th>events</th><td class="types">${w.types.length ? w.types.join(', ') : 'all types'}</td></tr>
<tr><th>defined in</th><td>${w.source === 'config' ? 'the config file' : 'the API'}</td></tr>
<tr><th>state</th><td class="state">${stateOf(w)}</td></tr>
<tr><th>events delivered</th><td>${w.delivered}</td></tr>
<tr><th>failed POSTs</th><td>${w.failures}</td></tr>
<tr><th>waiting</th><td>${w.pending ? `a batch of ${w.pending.events} event${w.pending.events === 1 ? '' : 's'}` : 'nothing'}; log position ${w.cursor} (${w.lag} behind the end of the log, all accounts)</td></tr>
</table>
<div class="actions">
<form method="post" action="/webhooks/test" class="inline send-test">${hidden}<button type="submit">Send test event</button></form>
${w.disabled && html`<form method="post" action="/webhooks/enable" class="inline enable">${hidden}<button type="submit">Re-enable</button></form>`}
</div>
<h3>Last deliveries</h3>
${deliveriesTable(w, hooks.deliveries(w.account, w.id))}
</section>`;
}

export function registerWebhooks(app: FastifyInstance, ctx: DashboardContext): void {
  const cfg = { config: { public: true } };
  const hooksOf = (): WebhookDispatcher => {
    if (!ctx.webhooks) throw new PostinoError('NOT_FOUND', 'this node sends no webhooks');
    return ctx.webhooks;
  };
  const accountOf = (req: FastifyRequest, source: unknown): string | undefined => {
    const a = accountScope(req, field(source, 'account'));
    if (a !== undefined && req.principal.kind === 'node' && !ctx.delivery.accounts.has(a)) throw new PostinoError('BAD_REQUEST', `unknown account "${a}"`);
    return a;
  };
  const idOf = (source: unknown): string => {
    const id = field(source, 'id');
    if (!id) throw new PostinoError('BAD_REQUEST', 'id is required');
    return id;
  };
  const back = (account: string | undefined, req: FastifyRequest, extra: Record<string, string>): string =>
    url('/webhooks', { account: req.principal.kind === 'node' ? account : undefined, ...extra });

  app.get('/webhooks', cfg, async (req, reply) => {
    const session = req.dashboardSession!;
    const hooks = hooksOf();
    const node = session.principal.kind === 'node';
    const account = accountOf(req, req.query);
    const list = hooks.list(account).sort((x, y) => (x.account + x.id < y.account + y.id ? -1 : 1));
    const done = field(req.query, 'done');
    const which = field(req.query, 'webhook');
    let notice: Html | undefined;
    if (done === 'enabled' && which) notice = html`<p class="notice" role="status">${which} is enabled again; its waiting batch is sent now.</p>`;
    if (done === 'tested' && which) {
      // The outcome as the dispatcher recorded it (the query names only which endpoint).
      const w = list.find((x) => x.id === which);
      const t = w && hooks.deliveries(w.account, w.id).find((d) => d.kind === 'test');
      if (t) notice = html`<p class="${t.ok ? 'notice' : 'error'}" role="status" id="test-result">Test event to ${which}: ${t.status === null ? `no answer (${t.error ?? ''})` : `HTTP ${t.status}`} in ${t.ms} ms.</p>`;
    }
    const known = [...ctx.delivery.accounts].sort();
    const body = html`${notice}
${node && html`<form method="get" action="/webhooks" class="card search"><label>Account<select name="account"><option value="">all accounts</option>${known.map((a) => html`<option${a === account ? html` selected` : ''}>${a}</option>`)}</select></label><button type="submit">Show</button></form>`}
${list.length ? list.map((w) => endpointCard(session, hooks, w, node)) : html`<p id="no-webhooks">No webhook endpoints${account ? html` for ${account}` : ''}. Add one in the config file (<code>accounts[].webhooks</code>) or with <code>POST /api/webhooks</code>.</p>`}`;
    return sendHtml(reply, layout({ title: 'Webhooks', session, active: 'webhooks', captured: ctx.capture !== undefined && node, body }));
  });

  app.post('/webhooks/test', cfg, async (req, reply) => {
    const account = accountOf(req, req.body);
    const id = idOf(req.body);
    await hooksOf().test(account, id);
    return seeOther(reply, back(account, req, { done: 'tested', webhook: id }));
  });

  app.post('/webhooks/enable', cfg, async (req, reply) => {
    const account = accountOf(req, req.body);
    const id = idOf(req.body);
    await hooksOf().enable(account, id);
    return seeOther(reply, back(account, req, { done: 'enabled', webhook: id }));
  });
}

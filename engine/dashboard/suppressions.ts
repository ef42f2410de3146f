/*
 * suppressions.ts — the suppression list in the dashboard, over the same
 * operations as the API (suppression-routes.ts: listSuppressions,
 * addSuppressions, removeSuppression, importSuppressionCsv, suppressionCsv).
 *
 *   GET  /suppressions?q=&account=&reason=&after=   search (part of the address), paged by cursor
 *   POST /suppressions/add                           one address (reason `manual`)
 *   GET  /suppressions/remove?account=&address=&scope=   the confirmation page
 *   POST /suppressions/remove                        removes it
 *   POST /suppressions/import                        CSV rows pasted (or loaded from a file by
 *                                                    dashboard.js): address[,scope[,detail]]
 *   GET  /suppressions/export.csv[?account=]         the list as CSV
 *
 * An account session works on its own account only; the operator picks one.
 * Entries caused by a message link to that message's page (its queue id).
 * Side effects: LevelDB reads and writes (through the shared operations).
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { PostinoError } from '../../common/errors.js';
import { accountScope } from '../../common/http-server.js';
import { addSuppressions, importSuppressionCsv, listSuppressions, removeSuppression, suppressionCsv, SUPPRESSION_REASONS } from '../suppression-routes.js';
import type { DashboardContext } from './context.js';
import { html, url, type Html } from './html.js';
import { csrfField, field, layout, seeOther, sendHtml, when } from './page.js';
import type { Session } from './sessions.js';

const PAGE_SIZE = 50;
const DONE: Record<string, string> = { added: 'Added.', removed: 'Removed.', missing: 'That entry was not on the list.' };

export function registerSuppressions(app: FastifyInstance, ctx: DashboardContext): void {
  const cfg = { config: { public: true } };
  const known = (): string[] => [...ctx.delivery.accounts].sort();
  /** The account a request names (an account session: its own); `required` for changes. */
  const accountOf = (req: FastifyRequest, source: unknown, required: boolean): string | undefined => {
    const a = accountScope(req, field(source, 'account'));
    if (a !== undefined && !ctx.delivery.accounts.has(a)) throw new PostinoError('BAD_REQUEST', `unknown account "${a}"`);
    if (a === undefined && required) throw new PostinoError('BAD_REQUEST', 'choose an account');
    return a;
  };
  const accountPicker = (session: Session, selected: string | undefined, any: boolean): Html =>
    session.principal.kind === 'node'
      ? html`<label>Account<select name="account"${any ? '' : html` required`}>${any && html`<option value="">all</option>`}${known().map((a) => html`<option${a === selected ? html` selected` : ''}>${a}</option>`)}</select></label>`
      : html``;

  app.get('/suppressions', cfg, async (req, reply) => {
    const session = req.dashboardSession!;
    const q = req.query;
    const account = accountOf(req, q, false);
    const search = field(q, 'q');
    const reason = field(q, 'reason');
    const after = field(q, 'after');
    const page = await listSuppressions(ctx.suppressions, { account, contains: search, reason, after, limit: PAGE_SIZE });
    const node = session.principal.kind === 'node';
    const done = DONE[field(q, 'done') ?? ''];
    const body = html`${done && html`<p class="notice" role="status">${done}</p>`}
<form method="get" action="/suppressions" class="card search">
<label>Address contains<input name="q" value="${search ?? ''}"></label>
<label>Reason<select name="reason"><option value="">any</option>${SUPPRESSION_REASONS.map((r) => html`<option${r === reason ? html` selected` : ''}>${r}</option>`)}</select></label>
${accountPicker(session, account, true)}
<button type="submit">Search</button>
<a href="${url('/suppressions/export.csv', { account: node ? account : undefined })}" download>Export CSV</a>
</form>
<div class="scroll"><table class="list" id="suppressions">
<thead><tr><th>address</th><th>scope</th><th>reason</th><th>since (UTC)</th><th>detail</th><th>message</th>${node && html`<th>account</th>`}<th></th></tr></thead>
<tbody>${page.suppressions.map(
      (e) => html`<tr data-address="${e.address}"><td>${e.address}</td><td>${e.scope}</td><td>${e.reason}</td><td>${when(e.at)}</td><td>${e.detail ?? ''}</td>
<td>${e.queueId && html`<a href="${`/messages/${encodeURIComponent(e.queueId)}`}">${e.queueId}</a>`}</td>${node && html`<td>${e.account}</td>`}
<td><a class="remove" href="${url('/suppressions/remove', { account: e.account, address: e.address, scope: e.scope })}">Remove…</a></td></tr>`,
    )}</tbody></table></div>
${page.suppressions.length === 0 && html`<p>No entries${search ? html` containing “${search}”` : ''}.</p>`}
${page.next && html`<p class="pager"><a href="${url('/suppressions', { q: search, reason, account: node ? account : undefined, after: page.next })}">Next page →</a></p>`}
<section class="cards">
<form method="post" action="/suppressions/add" class="card" id="add-suppression"><h2>Add an address</h2>${csrfField(session)}
${accountPicker(session, account, false)}
<label>Address<input name="address" type="email" required></label>
<label>Scope<input name="scope" value="*" placeholder="* or list:name"></label>
<label>Note<input name="detail"></label>
<button type="submit">Add</button></form>
<form method="post" action="/suppressions/import" class="card" id="import-suppressions"><h2>Import CSV</h2>${csrfField(session)}
${accountPicker(session, account, false)}
<label>Reason<select name="reason">${SUPPRESSION_REASONS.map((r) => html`<option${r === 'manual' ? html` selected` : ''}>${r}</option>`)}</select></label>
<label>Rows: <code>address[,scope[,detail]]</code><textarea name="csv" rows="6" required></textarea></label>
<label class="file">or load a file<input type="file" accept=".csv,text/csv,text/plain" data-fills="csv"></label>
<button type="submit">Import</button></form>
</section>`;
    return sendHtml(reply, layout({ title: 'Suppressions', session, active: 'suppressions', captured: ctx.capture !== undefined && node, body }));
  });

  app.post('/suppressions/add', cfg, async (req, reply) => {
    const account = accountOf(req, req.body, true)!;
    await addSuppressions(ctx.suppressions, [{ account, address: field(req.body, 'address') ?? '', scope: field(req.body, 'scope'), reason: 'manual', detail: field(req.body, 'detail') ?? `added by ${req.dashboardSession!.label} (dashboard)` }]);
    return seeOther(reply, url('/suppressions', { done: 'added', q: field(req.body, 'address') }));
  });

  app.get('/suppressions/remove', cfg, async (req, reply) => {
    const session = req.dashboardSession!;
    const account = accountOf(req, req.query, true)!;
    const address = field(req.query, 'address');
    if (!address) throw new PostinoError('BAD_REQUEST', 'address is required');
    const scope = field(req.query, 'scope') ?? '*';
    const body = html`<form method="post" action="/suppressions/remove" class="card" id="confirm-remove">${csrfField(session)}
<input type="hidden" name="account" value="${account}"><input type="hidden" name="address" value="${address}"><input type="hidden" name="scope" value="${scope}">
<p>Remove <strong>${address}</strong> (scope ${scope}${session.principal.kind === 'node' ? html`, account ${account}` : ''}) from the suppression list? Mail to it will be sent again.</p>
<button type="submit" class="danger">Remove</button> <a href="/suppressions">Cancel</a></form>`;
    return sendHtml(reply, layout({ title: 'Remove a suppression', session, active: 'suppressions', captured: ctx.capture !== undefined && session.principal.kind === 'node', body }));
  });

  app.post('/suppressions/remove', cfg, async (req, reply) => {
    const account = accountOf(req, req.body, true)!;
    const address = field(req.body, 'address');
    if (!address) throw new PostinoError('BAD_REQUEST', 'address is required');
    const removed = await removeSuppression(ctx.suppressions, account, address, field(req.body, 'scope') ?? '*');
    return seeOther(reply, url('/suppressions', { done: removed ? 'removed' : 'missing' }));
  });

  app.post('/suppressions/import', cfg, async (req, reply) => {
    const session = req.dashboardSession!;
    const account = accountOf(req, req.body, true)!;
    const csv = field(req.body, 'csv') ?? '';
    const r = await importSuppressionCsv(ctx.suppressions, account, field(req.body, 'reason'), Readable.from([csv]));
    const body = html`<p class="notice" role="status" id="import-result">Imported ${r.imported} address${r.imported === 1 ? '' : 'es'} into ${account}; ${r.rejectedCount} row${r.rejectedCount === 1 ? '' : 's'} rejected.</p>
${r.rejected.length > 0 && html`<div class="scroll"><table class="list"><thead><tr><th>line</th><th>why</th></tr></thead><tbody>${r.rejected.map((x) => html`<tr><td>${x.line}</td><td>${x.reason}</td></tr>`)}</tbody></table></div>`}
<p><a href="/suppressions">Back to the list</a></p>`;
    return sendHtml(reply, layout({ title: 'Import', session, active: 'suppressions', captured: ctx.capture !== undefined && session.principal.kind === 'node', body }));
  });

  app.get('/suppressions/export.csv', cfg, async (req, reply) => {
    const account = accountOf(req, req.query, false);
    return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="suppressions${account ? `-${account}` : ''}.csv"`).send(suppressionCsv(ctx.suppressions, account));
  });
}

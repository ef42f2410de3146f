/*
 * captured.ts — the captured-mail pages (when the capture sink is the MTA
 * cluster, as in `postino up`), a little like Mailpit:
 *
 *   GET /captured                 what arrived, newest first (?before=<id> pages on); the operator only
 *   GET /captured/:id             one message: its envelope and headers, the HTML part
 *                                 in a sandboxed iframe, the text part, the .eml
 *   GET /captured/:id/body.html   the HTML part alone, under BODY_CSP (page.ts)
 *   GET /captured/:id/raw.eml     the message as the sink received it
 *
 * The sink's files carry no account; an account may open a copy only when one
 * of its own delivered events names it (capture-folder.ts capturedIdOf), so it
 * reaches its copies from its messages' pages and never another account's.
 * Side effects: file reads; an event-log scan per copy an account opens.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { PostinoError } from '../../common/errors.js';
import { requireNode } from '../../common/http-server.js';
import { capturedIdOf, isCaptureId, type CaptureFolder } from './capture-folder.js';
import type { DashboardContext } from './context.js';
import { html, url, type Html } from './html.js';
import { mailParts, sendEml, sendMailBody } from './mail-view.js';
import { field, layout, sendHtml, when } from './page.js';

const PAGE_SIZE = 50;

/** The folder, and the copy id when the caller may open it (404 otherwise: no hint that it exists). */
async function openable(ctx: DashboardContext, req: FastifyRequest, id: string): Promise<CaptureFolder> {
  const folder = ctx.capture;
  if (!folder || !isCaptureId(id)) throw new PostinoError('NOT_FOUND', 'no such captured message');
  const p = req.principal;
  if (p.kind === 'account') {
    const mine = await ctx.events.read(0, 1, (e) => e.account === p.account && capturedIdOf(e) === id);
    if (mine.length === 0) throw new PostinoError('NOT_FOUND', 'no such captured message');
  }
  return folder;
}

/** The body of a captured copy as the message page and the captured page show it. */
export async function capturedCopy(folder: CaptureFolder, id: string): Promise<Html> {
  const parsed = await folder.parsed(id);
  const s = await folder.summary(id);
  if (!parsed || !s) return html`<p class="hint">The captured copy ${id} is no longer in the sink's folder.</p>`;
  return html`<section class="card captured-copy" data-capture-id="${id}">
<h2>${s.subject || '(no subject)'}</h2>
<table class="kv">
<tr><th>from</th><td>${s.from}</td></tr>
<tr><th>to</th><td>${s.to}</td></tr>
<tr><th>envelope</th><td>${s.mailFrom} → ${s.rcptTo.join(', ')}</td></tr>
<tr><th>received</th><td>${when(s.receivedAt)} · ${s.size} bytes</td></tr>
</table>
<p><a href="${`/captured/${id}/raw.eml`}" download>Download .eml</a> · <a href="${`/captured/${id}`}">Open captured copy</a></p>
${mailParts(parsed, `/captured/${id}/body.html`, 'captured message')}
</section>`;
}

export function registerCaptured(app: FastifyInstance, ctx: DashboardContext): void {
  const cfg = { config: { public: true } };

  app.get('/captured', cfg, async (req, reply) => {
    requireNode(req);
    const folder = ctx.capture;
    if (!folder) throw new PostinoError('NOT_FOUND', 'the capture sink is not this node\'s MTA cluster (no capture folder)');
    const before = field(req.query, 'before');
    const { items, next } = await folder.list(before, PAGE_SIZE);
    const body = html`<p class="hint">What the capture sink received (${folder.dir}), newest first.</p>
<div class="scroll"><table class="list" id="captured-list">
<thead><tr><th>received</th><th>to</th><th>from</th><th>subject</th><th>size</th></tr></thead>
<tbody>${items.map((m) => html`<tr><td>${when(m.receivedAt)}</td><td>${m.rcptTo.join(', ')}</td><td>${m.from || m.mailFrom}</td><td><a href="${`/captured/${m.id}`}">${m.subject || '(no subject)'}</a></td><td>${m.size}</td></tr>`)}</tbody>
</table></div>
${items.length === 0 && html`<p>Nothing captured${before ? ' before this point' : ' yet'}.</p>`}
${next && html`<p class="pager"><a href="${url('/captured', { before: next })}">Older →</a></p>`}`;
    return sendHtml(reply, layout({ title: 'Captured mail', session: req.dashboardSession!, active: 'captured', captured: true, body }));
  });

  app.get('/captured/:id', cfg, async (req, reply) => {
    const id = (req.params as { id: string }).id;
    const folder = await openable(ctx, req, id);
    if (!(await folder.summary(id))) throw new PostinoError('NOT_FOUND', 'no such captured message');
    const p = req.principal;
    return sendHtml(reply, layout({ title: 'Captured message', session: req.dashboardSession!, active: 'captured', captured: p.kind === 'node', body: await capturedCopy(folder, id) }));
  });

  app.get('/captured/:id/body.html', cfg, async (req, reply) => {
    const id = (req.params as { id: string }).id;
    const folder = await openable(ctx, req, id);
    const parsed = await folder.parsed(id);
    if (!parsed) throw new PostinoError('NOT_FOUND', 'no such captured message');
    return sendMailBody(reply, parsed);
  });

  app.get('/captured/:id/raw.eml', cfg, async (req, reply) => {
    const id = (req.params as { id: string }).id;
    const folder = await openable(ctx, req, id);
    const raw = await folder.raw(id);
    if (!raw) throw new PostinoError('NOT_FOUND', 'no such captured message');
    return sendEml(reply, raw, id);
  });
}

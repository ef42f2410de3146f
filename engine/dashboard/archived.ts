/*
 * archived.ts — a message's archived source (engine/archive/message-archive.ts)
 * on its page, and its routes:
 *
 *   GET /archive/:account/:id/raw.eml     the source as the listener accepted it
 *   GET /archive/:account/:id/body.html   its HTML part alone, under BODY_CSP (mail-view.ts)
 *
 * `:id` is the intake queue id (the `250 queued as`, the events' intakeId). An
 * account's session may name only its own account (403 otherwise), and the
 * archive reads only that account's folder, so no id reaches another account's
 * source (404, no hint that it exists). While the archive keeps it the page
 * shows the headers, the HTML part in a sandboxed iframe, the text part and the
 * download; after its retention, or with the archive off, it says so.
 * Side effects: file reads.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { PostinoEvent } from '../../common/events.js';
import { PostinoError } from '../../common/errors.js';
import { accountScope } from '../../common/http-server.js';
import type { DashboardContext } from './context.js';
import { html, type Html } from './html.js';
import { mailParts, parseMail, sendEml, sendMailBody } from './mail-view.js';

/** Archived sources looked up per page (a Message-ID reused for many sends has many); the rest are not looked for. */
const MAX_SOURCES = 20;

/** The intake messages a page's events come from: copies name theirs, intake-level events (rejected) are theirs. */
function intakeIds(found: readonly PostinoEvent[]): Array<{ account: string; id: string }> {
  const seen = new Map<string, { account: string; id: string }>();
  for (const e of found) {
    const id = e.intakeId ?? (e.type === 'rejected' || (e.type === 'suppressed' && !e.intakeId) ? e.queueId : undefined);
    if (id && !seen.has(`${e.account}/${id}`)) seen.set(`${e.account}/${id}`, { account: e.account, id });
  }
  return [...seen.values()].slice(0, MAX_SOURCES);
}

const base = (account: string, id: string): string => `/archive/${encodeURIComponent(account)}/${encodeURIComponent(id)}`;

/** The section of a message page: the first archived source of its events, or why there is none. */
export async function archivedSection(ctx: DashboardContext, found: readonly PostinoEvent[]): Promise<Html> {
  const ids = intakeIds(found);
  const missing = (why: string): Html => html`<section class="card" id="archive"><h2>Source</h2><p class="hint" id="archive-missing">The source of this message is not archived: ${why}</p></section>`;
  if (ids.length === 0) return missing('its events name no accepted message.');
  if (!ctx.archive) return missing('the message archive is not part of this node.');
  for (const { account, id } of ids) {
    const raw = await ctx.archive.read(account, id);
    if (!raw) continue;
    const parsed = await parseMail(raw);
    const others = ids.filter((x) => x.id !== id);
    const h = (name: string): string => {
      const v = parsed.headers.get(name);
      return v === undefined ? '' : typeof v === 'string' ? v : v instanceof Date ? v.toISOString() : ((v as { text?: string }).text ?? String(v));
    };
    return html`<section class="card archived-source" id="archive" data-intake-id="${id}">
<h2>Source <small>as accepted, archived for ${ctx.archive.policy(account).retentionDays} days</small></h2>
<table class="kv" id="archive-headers">
${(['subject', 'from', 'to', 'date'] as const).map((name) => h(name) && html`<tr><th>${name}</th><td>${h(name)}</td></tr>`)}
<tr><th>intake id</th><td>${id} · ${raw.length} bytes</td></tr>
</table>
<p><a id="archive-download" href="${`${base(account, id)}/raw.eml`}" download>Download source (.eml)</a>${others.length > 0 && html` · also: ${others.map((o) => html`<a href="${`${base(o.account, o.id)}/raw.eml`}" download>${o.id}.eml</a> `)}`}</p>
${mailParts(parsed, `${base(account, id)}/body.html`, 'archived message', 'mail-source', true)}
</section>`;
  }
  const days = [...new Set(ids.map((x) => ctx.archive!.policy(x.account)))].map((p) => (p.enabled ? `past its retention of ${p.retentionDays} days` : 'the archive is off for this account'));
  return missing(`${[...new Set(days)].join('; ')} (or it arrived before the archive was on).`);
}

export function registerArchived(app: FastifyInstance, ctx: DashboardContext): void {
  const cfg = { config: { public: true } };
  const source = async (req: FastifyRequest): Promise<{ raw: Buffer; id: string }> => {
    const p = req.params as { account: string; id: string };
    const account = accountScope(req, p.account)!;
    const raw = await ctx.archive?.read(account, p.id);
    if (!raw) throw new PostinoError('NOT_FOUND', 'no archived source for this message (never archived, or past its retention)');
    return { raw, id: p.id };
  };
  app.get('/archive/:account/:id/raw.eml', cfg, async (req, reply) => {
    const { raw, id } = await source(req);
    return sendEml(reply, raw, id);
  });
  app.get('/archive/:account/:id/body.html', cfg, async (req, reply) => sendMailBody(reply, await parseMail((await source(req)).raw)));
}

/*
 * messages.ts — message search and one message's page.
 *
 *   GET /messages?recipient=&sender=&messageId=&queueId=&tag=&type=&from=&to=&account=[&before=<seq>|&after=<seq>]
 *       events matching every given field; recipient and sender match a part of
 *       the address (case-insensitive), the rest exactly; from/to are UTC times.
 *       A whole address as recipient (local part @ domain) matches that address
 *       exactly (case-insensitive) and is read through the recipient index
 *       (events/recipient-index.ts): its cost is that recipient's events, not the log's.
 *       Newest first by default, paged with `before=<seq>` (older); `after=<seq>`
 *       pages oldest first. Always by the event log's seq, never by offset.
 *   GET /messages/:id[?after=<seq>]
 *       one copy (queue id) or every copy of a Message-ID: its timeline (each event
 *       with the remote reply, bounce class, reason, URL), its copies still waiting
 *       with retry and drop (queue-actions.ts), its archived source (archived.ts), and
 *       the captured copies it was delivered as, shown as a mail client would (captured.ts).
 *
 * Reads go through EventLog.read(), or the recipient index for a whole address. A search (and a timeline) reads at most
 * SCAN_BUDGET events per request and hands back the seq it stopped at, so a rare match
 * in a long log costs several clicks on "continue", never one unbounded request. The links from
 * search results carry an `after` hint: the seq before an `accepted` event (a copy's
 * first), or LOOKBACK events before any other, with a link to search from the start.
 * Side effects: event-log reads.
 */
import type { FastifyInstance } from 'fastify';
import type { PostinoEvent } from '../../common/events.js';
import { PostinoError } from '../../common/errors.js';
import { splitAddress } from '../../common/address.js';
import { accountScope } from '../../common/http-server.js';
import { recipientIndexOf, type RecipientIndex } from '../events/recipient-index.js';
import { archivedSection } from './archived.js';
import { capturedCopy } from './captured.js';
import { capturedIdOf } from './capture-folder.js';
import type { DashboardContext } from './context.js';
import { html, url, type Html } from './html.js';
import { field, layout, sendHtml, when } from './page.js';
import { copiesSection } from './queue-actions.js';

/** Matches per page. */
const PAGE_SIZE = 50;
/** Events read per call to EventLog.read(). */
const CHUNK = 5_000;
/**
 * Events one request reads at most before it answers with a "continue" cursor: about half a
 * second here (each event is a LevelDB read and a JSON parse, ~5-10 µs). A search by a whole
 * address goes through the recipient index instead, within the same budget of events read.
 */
const SCAN_BUDGET = 50_000;
/** A message's events read at most (a copy has a handful; a Message-ID to a big list, one per recipient and outcome). */
const TIMELINE_MAX = 2_000;
/** A copy's first event is rarely further back than this from a later one (its delivery, its open). */
const LOOKBACK = 25_000;
const TYPES = ['accepted', 'scheduled', 'suppressed', 'delivered', 'deferred', 'bounced', 'complained', 'unsubscribed', 'opened', 'clicked', 'rejected', 'expired', 'failed'] as const;

interface Search {
  account?: string | undefined;
  recipient?: string | undefined;
  sender?: string | undefined;
  messageId?: string | undefined;
  queueId?: string | undefined;
  tag?: string | undefined;
  type?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
}

/** `2026-11-30T10:00` (a datetime-local field, read as UTC) or a full ISO time → ISO; BAD_REQUEST otherwise. */
function isoTime(v: string | undefined, name: string): string | undefined {
  if (!v) return undefined;
  const t = Date.parse(/[zZ]|[+-]\d\d:\d\d$/.test(v) ? v : `${v}Z`);
  if (Number.isNaN(t)) throw new PostinoError('BAD_REQUEST', `${name} is not a time (use 2026-11-30T10:00, UTC)`);
  return new Date(t).toISOString();
}

function bareId(id: string): string {
  return id.replace(/^<|>$/g, '');
}

function matcher(s: Search): (e: PostinoEvent) => boolean {
  const rcpt = s.recipient?.toLowerCase();
  const sender = s.sender?.toLowerCase();
  const mid = s.messageId ? bareId(s.messageId) : undefined;
  const from = isoTime(s.from, 'from');
  const to = isoTime(s.to, 'to');
  return (e) =>
    (!s.account || e.account === s.account) &&
    (!rcpt || (e.recipient ?? '').toLowerCase().includes(rcpt)) &&
    (!sender || (e.sender ?? '').toLowerCase().includes(sender)) &&
    (!mid || (e.messageId !== undefined && bareId(e.messageId) === mid)) &&
    (!s.queueId || e.queueId === s.queueId) &&
    (!s.tag || e.tag === s.tag) &&
    (!s.type || e.type === s.type) &&
    (!from || e.at >= from) &&
    (!to || e.at <= to);
}

/** Reads from `after` until `want` matches, the budget or the end; `next` is where to go on (null at the end). */
async function scan(ctx: DashboardContext, after: number, keep: (e: PostinoEvent) => boolean, want: number, budget: number): Promise<{ found: PostinoEvent[]; next: number | null }> {
  const found: PostinoEvent[] = [];
  let pos = after;
  let read = 0;
  for (;;) {
    const batch = await ctx.events.read(pos, CHUNK);
    for (const e of batch) {
      pos = e.seq;
      if (keep(e)) {
        found.push(e);
        if (found.length >= want) return { found, next: pos };
      }
    }
    read += batch.length;
    if (batch.length < CHUNK) return { found, next: null };
    if (read >= budget) return { found, next: pos };
  }
}

/**
 * A query naming a whole address (a local part, "@", a domain with a dot): searched through
 * the recipient index. `ada@example` (no dot yet) is taken as part of an address and scanned.
 */
function fullAddress(q: string | undefined): string | undefined {
  const a = q?.trim();
  const p = a === undefined ? undefined : splitAddress(a);
  return p && p.local && !/\s/.test(p.local) && /^[^.\s@]+(\.[^.\s@]+)+$/.test(p.domain) ? a : undefined;
}

/**
 * One page through the recipient index: that recipient's events from `after` up (or from
 * `before` down), the other fields checked on each, at most `budget` of them read. `next`
 * is the cursor of the page after: the last match shown when there are more, else where
 * the budget ran out, null at the end.
 */
async function indexPage(ctx: DashboardContext, index: RecipientIndex, s: Search, address: string, cursor: { after: number } | { before: number }, keep: (e: PostinoEvent) => boolean, want: number, budget: number): Promise<{ found: PostinoEvent[]; next: number | null }> {
  const top = ctx.events.watermark;
  const range = 'after' in cursor ? { after: cursor.after, before: top + 1, reverse: false } : { after: 0, before: Math.min(cursor.before, top + 1), reverse: true };
  const found: PostinoEvent[] = [];
  let read = 0;
  for await (const e of index.read(s.account || undefined, address, range)) {
    if (keep(e)) {
      // One past the page tells whether there is a next page.
      if (found.length === want) return { found, next: found[want - 1]!.seq };
      found.push(e);
    }
    if (++read >= budget) return { found, next: e.seq };
  }
  return { found, next: null };
}

/**
 * Newest first: reads the window of at most `budget` events below `before` (forward, as
 * read() goes) and keeps its newest `want` matches. `next` is the `before` of the page after:
 * the oldest match shown when the window held more, else the window's start (null at seq 1).
 */
async function scanBack(ctx: DashboardContext, before: number, keep: (e: PostinoEvent) => boolean, want: number, budget: number): Promise<{ found: PostinoEvent[]; next: number | null }> {
  const lo = Math.max(0, before - 1 - budget);
  const kept: PostinoEvent[] = [];
  let dropped = false;
  let pos = lo;
  for (;;) {
    const limit = Math.min(CHUNK, before - 1 - pos);
    if (limit <= 0) break;
    const batch = await ctx.events.read(pos, limit);
    for (const e of batch) {
      pos = e.seq;
      if (e.seq >= before) break;
      if (!keep(e)) continue;
      kept.push(e);
      if (kept.length > want) {
        kept.shift();
        dropped = true;
      }
    }
    if (batch.length < limit) break;
  }
  const found = kept.reverse();
  return { found, next: dropped ? found[found.length - 1]!.seq : lo > 0 ? lo + 1 : null };
}

function detail(e: PostinoEvent): Html {
  const reply = e.smtp && (e.smtp.response.startsWith(String(e.smtp.code)) ? e.smtp.response : `${e.smtp.code} ${e.smtp.enhanced} ${e.smtp.response}`);
  return html`${reply && html`<code>${reply}</code> `}${e.bounce && html`<span class="bad">${e.bounce.class} bounce ${e.bounce.status}</span> `}${e.reason && html`${e.reason} `}${e.nextAttemptAt && html`next attempt ${when(e.nextAttemptAt)} `}${e.url && html`<span class="url">${e.url}</span> `}${e.via && html`via ${e.via} `}${e.list && html`list ${e.list} `}${e.machine && html`(machine) `}${e.relay && html`relay ${e.relay}`}`;
}

function searchForm(s: Search, node: boolean, accounts: readonly string[]): Html {
  const input = (name: keyof Search, label: string, type = 'text'): Html => html`<label>${label}<input name="${name}" type="${type}" value="${s[name] ?? ''}"></label>`;
  return html`<form method="get" action="/messages" class="card search">
${input('recipient', 'Recipient')}
${input('sender', 'Sender')}
${input('messageId', 'Message-ID')}
${input('queueId', 'Queue id')}
${input('tag', 'Tag')}
<label>Event<select name="type"><option value="">any</option>${TYPES.map((t) => html`<option${s.type === t ? html` selected` : ''}>${t}</option>`)}</select></label>
${input('from', 'From (UTC)', 'datetime-local')}
${input('to', 'To (UTC)', 'datetime-local')}
${node && html`<label>Account<select name="account"><option value="">all</option>${accounts.map((a) => html`<option${s.account === a ? html` selected` : ''}>${a}</option>`)}</select></label>`}
<button type="submit">Search</button>
</form>`;
}

export function registerMessages(app: FastifyInstance, ctx: DashboardContext): void {
  const cfg = { config: { public: true } };
  const captured = (node: boolean): boolean => ctx.capture !== undefined && node;

  app.get('/messages', cfg, async (req, reply) => {
    const q = req.query;
    const node = req.principal.kind === 'node';
    const s: Search = {
      account: accountScope(req, field(q, 'account')),
      recipient: field(q, 'recipient'),
      sender: field(q, 'sender'),
      messageId: field(q, 'messageId'),
      queueId: field(q, 'queueId'),
      tag: field(q, 'tag'),
      type: field(q, 'type'),
      from: field(q, 'from'),
      to: field(q, 'to'),
    };
    const cursor = (name: string): number | undefined => {
      const v = field(q, name);
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new PostinoError('BAD_REQUEST', `${name} must be a non-negative integer (an event seq)`);
      return n;
    };
    const after = cursor('after');
    const before = cursor('before');
    const oldestFirst = after !== undefined;
    const address = fullAddress(s.recipient);
    const index = address === undefined ? undefined : recipientIndexOf(ctx.events);
    const keep = index ? matcher({ ...s, recipient: undefined }) : matcher(s);
    const { found, next } = index && address
      ? await indexPage(ctx, index, s, address, oldestFirst ? { after } : { before: before ?? ctx.events.watermark + 1 }, keep, PAGE_SIZE, SCAN_BUDGET)
      : oldestFirst
        ? await scan(ctx, after, keep, PAGE_SIZE, SCAN_BUDGET)
        : await scanBack(ctx, before ?? ctx.events.watermark + 1, keep, PAGE_SIZE, SCAN_BUDGET);
    const shown: Search = node ? s : { ...s, account: undefined };
    const rows = found.map(
      (e) => html`<tr data-seq="${e.seq}">
<td>${when(e.at)}</td><td class="type t-${e.type}">${e.type}</td><td>${e.recipient ?? ''}</td><td>${e.sender ?? ''}</td>
<td>${e.queueId && html`<a href="${url(`/messages/${encodeURIComponent(e.queueId)}`, { after: e.type === 'accepted' ? e.seq - 1 : Math.max(0, e.seq - LOOKBACK) })}">${e.queueId}</a>`}</td>
<td>${e.tag ?? ''}</td>${node && html`<td>${e.account}</td>`}<td>${detail(e)}</td></tr>`,
    );
    const moving = before !== undefined || after !== undefined;
    const nextLink = next !== null && url('/messages', { ...shown, ...(oldestFirst ? { after: next } : { before: next }) });
    const body = html`${searchForm(shown, node, [...ctx.delivery.accounts].sort())}
<p class="hint">${oldestFirst ? html`Oldest first. <a href="${url('/messages', { ...shown })}">Newest first</a>` : html`Newest first. <a href="${url('/messages', { ...shown, after: 0 })}">Oldest first</a>`}</p>
<div class="scroll"><table class="list" id="results">
<thead><tr><th>time (UTC)</th><th>event</th><th>recipient</th><th>sender</th><th>queue id</th><th>tag</th>${node && html`<th>account</th>`}<th>detail</th></tr></thead>
<tbody>${rows}</tbody></table></div>
${found.length === 0 && html`<p>No matching events${moving ? ' beyond this point' : ''}${next !== null ? ' in this stretch of the log' : ''}.</p>`}
${nextLink && html`<p class="pager"><a href="${nextLink}">${found.length >= PAGE_SIZE ? (oldestFirst ? 'Next page →' : 'Older →') : 'Continue searching →'}</a></p>`}`;
    return sendHtml(reply, layout({ title: 'Messages', session: req.dashboardSession!, active: 'messages', captured: captured(node), body }));
  });

  app.get('/messages/:id', cfg, async (req, reply) => {
    const id = (req.params as { id: string }).id;
    const account = accountScope(req, undefined);
    const after = Math.max(0, Number(field(req.query, 'after') ?? 0) || 0);
    const bare = bareId(id);
    const keep = (e: PostinoEvent): boolean => (!account || e.account === account) && (e.queueId === id || (e.messageId !== undefined && bareId(e.messageId) === bare));
    const { found, next } = await scan(ctx, after, keep, TIMELINE_MAX, SCAN_BUDGET);
    if (found.length === 0 && next === null) throw new PostinoError('NOT_FOUND', `no events for ${id}${account ? ` in account ${account}` : ''}`);
    const node = req.principal.kind === 'node';
    const more = next !== null && html`<p class="pager"><a href="${url(`/messages/${encodeURIComponent(id)}`, { after: next })}">${found.length === 0 ? 'Continue searching' : 'Later events'} (the log was read up to event ${next}) →</a></p>`;
    if (found.length === 0) {
      return sendHtml(reply, layout({ title: `Message ${id}`, session: req.dashboardSession!, active: 'messages', captured: captured(node), body: html`<p>No events for ${id} in this stretch of the log.</p>${more}` }));
    }
    const first = found[0]!;
    const copies = [...new Set(found.map(capturedIdOf).filter((c): c is string => c !== undefined))];
    const meta = first.metadata ? Object.entries(first.metadata) : [];
    const body = html`<section class="card">
<table class="kv">
<tr><th>Message-ID</th><td>${first.messageId ?? ''}</td></tr>
<tr><th>sender</th><td>${first.sender ?? ''}</td></tr>
<tr><th>recipients</th><td>${[...new Set(found.map((e) => e.recipient).filter(Boolean))].join(', ')}</td></tr>
${first.tag && html`<tr><th>tag</th><td>${first.tag}</td></tr>`}
${meta.length > 0 && html`<tr><th>metadata</th><td>${meta.map(([k, v]) => `${k}=${v}`).join('; ')}</td></tr>`}
${node && html`<tr><th>account</th><td>${first.account}</td></tr>`}
</table></section>
<section class="card"><h2>Timeline</h2><div class="scroll"><table class="list" id="timeline">
<thead><tr><th>time (UTC)</th><th>event</th><th>recipient</th><th>queue id</th><th>detail</th></tr></thead>
<tbody>${found.map((e) => html`<tr><td>${when(e.at)}</td><td class="type t-${e.type}">${e.type}</td><td>${e.recipient ?? ''}</td><td>${e.queueId ?? ''}</td><td>${detail(e)}</td></tr>`)}</tbody>
</table></div>${more}${after > 0 && html`<p class="hint">Read from event ${after + 1} on; <a href="${`/messages/${encodeURIComponent(id)}?after=0`}">read from the start of the log</a> for anything earlier.</p>`}</section>
${await copiesSection(ctx, req, req.dashboardSession!, id, found)}
${await archivedSection(ctx, found)}
${copies.length > 0 && ctx.capture
    ? html`<section class="card"><h2>Captured copies</h2><ul id="captured-copies">${copies.map((c) => html`<li><a href="${`/captured/${c}`}">${c}</a></li>`)}</ul></section>${await capturedCopy(ctx.capture, copies[0]!)}`
    : html`<p class="hint">No captured copy: the body is shown only for copies the capture sink received.</p>`}`;
    return sendHtml(reply, layout({ title: `Message ${id}`, session: req.dashboardSession!, active: 'messages', captured: captured(node), body }));
  });
}

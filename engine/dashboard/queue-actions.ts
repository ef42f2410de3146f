/*
 * queue-actions.ts — a message's copies still on this node, on its page, with
 * "retry now" and "drop" (DESIGN.md, dashboard: held and deferred copies):
 *
 *   POST /copies/:copy/retry          a waiting copy (deferred, held by a pause or a relay
 *                                     outage, scheduled) is due now; a failed record goes
 *                                     back into the queue with a fresh attempt count
 *   GET  /copies/:copy/drop           the confirmation page
 *   POST /copies/:copy/drop           the copy is removed, never delivered; a waiting copy
 *                                     gets a `failed` event ("dropped … from the dashboard")
 *                                     in the same batch as its removal
 *
 * Both take `back` (the message page to return to). The same queue functions as
 * the forwarder's admin API (DurableQueue.reschedule/remove: a copy being sent
 * now is left to its attempt, 409) and the failed-records API (failed-routes.ts:
 * retryFailed/deleteFailed). A failed record already had its `failed` event, so
 * dropping it writes none (the statistics would count it twice). An account's
 * session acts on its own copies only (404 for another's, no hint it exists).
 * Side effects: LevelDB writes (synced), through the queue.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { QueueRecord } from '../../common/durable-queue.js';
import type { PostinoEvent } from '../../common/events.js';
import { PostinoError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { DeliveryMeta } from '../delivery/delivery-record.js';
import type { DashboardContext } from './context.js';
import { html, url, type Html } from './html.js';
import { csrfField, field, layout, seeOther, sendHtml, when } from './page.js';
import type { Session } from './sessions.js';

/** Copies listed on one message page (a Message-ID sent to a list has one per recipient). */
const MAX_COPIES = 100;
const ID = /^[0-9A-Z]{12,40}$/;

type CopyState = 'sending' | 'deferred' | 'scheduled' | 'held' | 'failed';

interface Copy {
  rec: QueueRecord<DeliveryMeta>;
  state: CopyState;
}

async function findCopy(ctx: DashboardContext, req: FastifyRequest, id: string): Promise<Copy> {
  const p = req.principal;
  const mine = (r: QueueRecord<DeliveryMeta> | undefined): r is QueueRecord<DeliveryMeta> => r !== undefined && (p.kind === 'node' || r.meta.account === p.account);
  if (ID.test(id)) {
    const rec = await ctx.deliveryQueue.get(id);
    if (mine(rec)) return { rec, state: stateOf(rec, Date.now(), paused(ctx, rec.meta.account)) };
    const failed = await ctx.deliveryQueue.getFailed(id);
    if (mine(failed)) return { rec: failed, state: 'failed' };
  }
  throw new PostinoError('NOT_FOUND', `no copy ${id} waiting on this node (delivered, dropped, or not yours)`);
}

function paused(ctx: DashboardContext, account: string): boolean {
  const d = ctx.delivery.killSwitch.details();
  return d.global !== null || d.accounts[account] !== undefined;
}

/**
 * deferred: a 4xx came back; held: the kill-switch stops it, or it is due and waits for a
 * relay; scheduled: a send time ahead. Retrying a held copy while paused only makes it due:
 * the switch still holds it.
 */
function stateOf(rec: QueueRecord<DeliveryMeta>, now: number, isPaused: boolean): CopyState {
  if (rec.leasedUntil > 0) return 'sending';
  if (rec.meta.lastError) return 'deferred';
  return isPaused || rec.due <= now ? 'held' : 'scheduled';
}

const DONE: Record<string, string> = { retried: 'The copy is due now; the delivery queue takes it up.', dropped: 'The copy was dropped; it will not be delivered.' };

/** The id of the message page a form returns to (a queue id or a Message-ID), else the copy's own. */
function backOf(req: FastifyRequest, copy: string): string {
  const back = field(req.method === 'POST' ? req.body : req.query, 'back');
  return back && back.length <= 998 ? back : copy;
}

const pageOf = (id: string): string => `/messages/${encodeURIComponent(id)}`;

/** The section of a message page: its copies still queued or in the failed records, with their actions. */
export async function copiesSection(ctx: DashboardContext, req: FastifyRequest, session: Session, pageId: string, found: readonly PostinoEvent[]): Promise<Html> {
  const ids = [...new Set(found.filter((e) => e.type === 'accepted' && e.queueId).map((e) => e.queueId!))].slice(0, MAX_COPIES);
  const copies: Copy[] = [];
  for (const id of ids) {
    try {
      copies.push(await findCopy(ctx, req, id));
    } catch {
      // delivered, bounced, dropped: not on this node any more
    }
  }
  const done = DONE[field(req.query, 'done') ?? ''];
  const notice = done && html`<p class="notice" role="status" id="copy-action-done">${done}</p>`;
  if (copies.length === 0) return html`${notice}<p class="hint" id="no-queued-copies">No copy of this message is waiting on this node.</p>`;
  const now = Date.now();
  const row = ({ rec, state }: Copy): Html => {
    const why = state === 'failed' ? rec.lastError : rec.meta.lastError?.response;
    const actions = state === 'sending'
      ? html`<small>being sent now</small>`
      : html`<form method="post" action="${`/copies/${rec.id}/retry`}" class="inline">${csrfField(session)}<input type="hidden" name="back" value="${pageId}"><button type="submit">Retry now</button></form>
<a class="drop danger" href="${url(`/copies/${rec.id}/drop`, { back: pageId })}">Drop…</a>`;
    return html`<tr data-copy="${rec.id}" data-state="${state}"><td>${rec.id}</td><td>${rec.meta.recipient}</td><td class="${state === 'failed' || state === 'deferred' ? 'bad' : ''}">${state}</td>
<td>${why ?? ''}${state !== 'failed' && state !== 'sending' && rec.due > now && html` <small>next attempt ${when(new Date(rec.due).toISOString())}</small>`}</td><td>${actions}</td></tr>`;
  };
  return html`${notice}<section class="card"><h2>Copies waiting on this node</h2>
<div class="scroll"><table class="list" id="queued-copies">
<thead><tr><th>copy</th><th>recipient</th><th>state</th><th>last reply</th><th></th></tr></thead>
<tbody>${copies.map(row)}</tbody></table></div></section>`;
}

export function registerQueueActions(app: FastifyInstance, ctx: DashboardContext, log: Logger): void {
  const cfg = { config: { public: true } };

  app.post('/copies/:copy/retry', cfg, async (req, reply) => {
    const id = (req.params as { copy: string }).copy;
    const { rec, state } = await findCopy(ctx, req, id);
    const who = req.dashboardSession!.label;
    const done = state === 'failed' ? await ctx.deliveryQueue.retryFailed(id, Date.now()) : await ctx.deliveryQueue.reschedule(id, Date.now());
    if (!done) throw new PostinoError('IN_FLIGHT', `copy ${id} is being sent now; its attempt decides`);
    log.info({ event: 'dashboard-retry', queueId: id, account: rec.meta.account, state, by: who }, 'copy retried from the dashboard');
    return seeOther(reply, url(pageOf(backOf(req, id)), { done: 'retried' }));
  });

  app.get('/copies/:copy/drop', cfg, async (req, reply) => {
    const id = (req.params as { copy: string }).copy;
    const { rec, state } = await findCopy(ctx, req, id);
    const back = backOf(req, id);
    const session = req.dashboardSession!;
    const body = html`<form method="post" action="${`/copies/${id}/drop`}" class="card" id="confirm-drop">${csrfField(session)}
<input type="hidden" name="back" value="${back}">
<p>Drop the ${state} copy <strong>${id}</strong> to <strong>${rec.meta.recipient}</strong>? It will never be delivered${state === 'failed' ? '' : ', and the event feed records it as failed'}. This cannot be undone.</p>
<button type="submit" class="danger">Drop this copy</button> <a href="${pageOf(back)}">Cancel</a>
</form>`;
    return sendHtml(reply, layout({ title: 'Drop a copy', session, active: 'messages', captured: ctx.capture !== undefined && session.principal.kind === 'node', body }));
  });

  app.post('/copies/:copy/drop', cfg, async (req, reply) => {
    const id = (req.params as { copy: string }).copy;
    const { rec, state } = await findCopy(ctx, req, id);
    const who = req.dashboardSession!.label;
    let done: boolean;
    if (state === 'failed') done = await ctx.deliveryQueue.deleteFailed(id);
    else {
      const m = rec.meta;
      const event = { type: 'failed' as const, account: m.account, messageId: m.messageId, queueId: id, intakeId: m.intakeId, stream: m.stream, recipient: m.recipient, sender: m.sender, tag: m.tag, metadata: m.metadata, reason: `dropped by ${who} from the dashboard` };
      done = (await ctx.events.commitWith([event], (ops) => ctx.deliveryQueue.remove(id, ops))) !== undefined;
    }
    if (!done) throw new PostinoError('IN_FLIGHT', `copy ${id} is being sent now; its attempt decides`);
    log.warn({ event: 'dashboard-drop', queueId: id, account: rec.meta.account, recipient: rec.meta.recipient, state, by: who }, 'copy dropped from the dashboard (no DSN)');
    return seeOther(reply, url(pageOf(backOf(req, id)), { done: 'dropped' }));
  });
}

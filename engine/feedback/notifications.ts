/*
 * notifications.ts — tells the people who can act (accounts[].engine.notify)
 * about hard bounces, blocks and complaints: a readable plain-text summary,
 * at once (a few seconds after the first event, so a burst becomes one mail)
 * or as a digest every notify.digestMinutes.
 *
 * A reader of the event log like any other (DESIGN.md: readers follow the log
 * by cursor): each account's cursor `notify!<account>` is written in the same
 * synced batch as the notification copies it puts on the delivery queue, so a
 * crash neither loses a summary nor sends one twice (up to the delivery's own
 * at-least-once). The copies skip the rewrap (no tracking, no footer, no
 * List-Unsubscribe: it is mail to the customer, not to their recipients), go
 * out with a null envelope sender and `Auto-Submitted: auto-generated` (RFC
 * 3834: no auto-reply, no bounce loop), and carry the tag NOTIFY_TAG; events
 * about them are never summarised again.
 *
 * Config: accounts[].engine.notify.{addresses, digestMinutes}, engine.hostname.
 * Side effects: LevelDB reads and writes; timers.
 */
import type { AccountConfig } from '../../common/config.js';
import { newQueueId, type DurableQueue, type Prepared } from '../../common/durable-queue.js';
import { NOTIFY_TAG, type PostinoEvent } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import { encodeUnstructured } from '../../common/mime-header.js';
import type { Store } from '../../common/store.js';
import type { DeliveryMeta } from '../delivery/delivery-record.js';
import type { EventLog } from '../events/event-log.js';

/** "At once" waits this long after the first event, so a burst of bounces is one mail. */
const COALESCE_MS = 5_000;
/** Events listed in one mail; the rest are counted and follow in the next. */
const MAX_LISTED = 500;
/** Events looked at per pass (the log holds every account's events). */
const SCAN_LIMIT = 50_000;

function cursorKey(account: string): string {
  return `notify!${account}`;
}

/** What a summary reports: the events someone should act on. */
export function worthNotifying(e: PostinoEvent): boolean {
  if (e.tag === NOTIFY_TAG) return false;
  if (e.type === 'paused' || e.type === 'webhook.disabled') return true; // decisions the account must hear of (engine/events/)
  if (e.type === 'complained') return true;
  return e.type === 'bounced' && (e.bounce?.class === 'hard' || e.bounce?.class === 'block');
}

function line(e: PostinoEvent): string {
  const what = e.type === 'complained' ? 'complaint' : e.type === 'bounced' ? `bounce ${e.bounce?.class ?? ''} ${e.bounce?.status ?? ''}`.trim() : e.type;
  const extra = [e.tag && `tag ${e.tag}`, e.messageId && `message ${e.messageId}`, e.reason && `"${e.reason.slice(0, 200)}"`].filter(Boolean).join(', ');
  // RFC 5322 2.1.1: a line is at most 998 octets; a long reason is cut well before.
  const who = e.recipient ?? (e.type === 'paused' || e.type === 'webhook.disabled' ? e.account : '(unknown recipient)'); // decisions about the account name it
  return `${e.at}  ${what.padEnd(22)} ${who}${extra ? `  (${extra})` : ''}`.replace(/[\r\n]+/g, ' ').slice(0, 900);
}

/** The summary mail's text. */
export function summaryText(account: string, events: readonly PostinoEvent[], more: number): { subject: string; body: string } {
  const hard = events.filter((e) => e.bounce?.class === 'hard').length;
  const block = events.filter((e) => e.bounce?.class === 'block').length;
  const complaints = events.filter((e) => e.type === 'complained').length;
  const paused = events.filter((e) => e.type === 'paused').length;
  const hooks = events.filter((e) => e.type === 'webhook.disabled').length;
  const counts = [paused && 'delivery paused by the reputation brake', hooks && `${hooks} webhook${hooks > 1 ? 's' : ''} disabled`, hard && `${hard} hard bounce${hard > 1 ? 's' : ''}`, block && `${block} blocked`, complaints && `${complaints} complaint${complaints > 1 ? 's' : ''}`].filter(Boolean).join(', ');
  const body = [
    `Postino: what came back for account "${account}".`,
    '',
    `${counts}${more ? ` (and ${more} more, in the next summary)` : ''}.`,
    '',
    'Hard bounces and complaints put the address on the suppression list: it gets no more mail.',
    'Blocked means the receiving server refused the sender (policy, reputation, authentication):',
    'the recipient is not suppressed; check SPF, DKIM and DMARC of the sending domain.',
    '',
    ...events.map(line),
    '',
    '-- ',
    'Sent by Postino because this address is in accounts[].engine.notify.addresses.',
    '',
  ].join('\r\n');
  return { subject: `Postino: ${counts} for ${account}`, body };
}

export interface NotifierOptions {
  store: Store;
  events: EventLog;
  delivery: DurableQueue<DeliveryMeta>;
  accounts: readonly AccountConfig[];
  hostname: string;
  log: Logger;
  now?: () => number;
}

export class Notifier {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly running = new Map<string, Promise<unknown>>();
  private stopped = false;
  private readonly now: () => number;
  private readonly targets: readonly AccountConfig[];

  constructor(private readonly o: NotifierOptions) {
    this.now = o.now ?? Date.now;
    this.targets = o.accounts.filter((a) => a.engine.notify.addresses.length > 0);
  }

  start(): void {
    if (this.targets.length === 0) return;
    const byId = new Map(this.targets.map((a) => [a.id, a]));
    this.o.events.subscribe((batch) => {
      for (const e of batch) {
        const a = byId.get(e.account);
        if (a && worthNotifying(e)) this.schedule(a);
      }
    });
    // What happened while we were down is summarised at start (the cursor says where we were).
    for (const a of this.targets) this.schedule(a);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.all(this.running.values());
  }

  private schedule(a: AccountConfig): void {
    if (this.stopped || this.timers.has(a.id)) return;
    const wait = a.engine.notify.digestMinutes > 0 ? a.engine.notify.digestMinutes * 60_000 : COALESCE_MS;
    this.timers.set(
      a.id,
      setTimeout(() => {
        this.timers.delete(a.id);
        const run = (this.running.get(a.id) ?? Promise.resolve()).then(() => this.flush(a)).catch((err: unknown) => this.o.log.error({ err, account: a.id }, 'notification not sent; retried with the next event'));
        this.running.set(a.id, run);
      }, wait),
    );
    this.timers.get(a.id)!.unref();
  }

  /** Sends what is new for this account since its cursor; returns the number of events summarised. */
  async flush(a: AccountConfig): Promise<number> {
    const v = await this.o.store.db.get(cursorKey(a.id));
    const after = v ? Number(v.toString()) : 0;
    const scanned = await this.o.events.read(after, SCAN_LIMIT);
    const mine = scanned.filter((e) => e.account === a.id && worthNotifying(e));
    const last = scanned.at(-1)?.seq ?? after;
    const cursorOp = { type: 'put' as const, key: cursorKey(a.id), value: Buffer.from(String(mine.length > MAX_LISTED ? mine[MAX_LISTED - 1]!.seq : last)) };
    if (mine.length === 0) {
      if (last !== after) await this.o.store.commit([cursorOp], { sync: false });
      if (scanned.length === SCAN_LIMIT) this.schedule(a);
      return 0;
    }
    const listed = mine.slice(0, MAX_LISTED);
    const { subject, body } = summaryText(a.id, listed, mine.length - listed.length);
    const now = this.now();
    const prepared: Prepared<DeliveryMeta>[] = [];
    for (const to of a.engine.notify.addresses) {
      const queueId = newQueueId(now);
      const messageId = `<${queueId}.notify@${this.o.hostname}>`;
      const raw = [
        `From: Postino <postmaster@${this.o.hostname}>`,
        `To: ${to}`,
        `Subject: ${encodeUnstructured(subject)}`,
        `Date: ${new Date(now).toUTCString().replace('GMT', '+0000')}`,
        `Message-ID: ${messageId}`,
        'Auto-Submitted: auto-generated',
        'Precedence: bulk',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: 8bit',
        '',
        body,
      ].join('\r\n');
      const meta: DeliveryMeta = {
        envelope: { mailFrom: '', rcptTo: [to], clientAddress: '127.0.0.1', heloName: this.o.hostname, receivedAt: now, tls: false },
        pending: [to],
        intakeId: queueId,
        account: a.id,
        recipient: to,
        sender: '',
        messageId,
        stream: 'transactional',
        tag: NOTIFY_TAG,
      };
      prepared.push(await this.o.delivery.prepare({ id: queueId, meta, body: Buffer.from(raw) }));
    }
    await this.o.delivery.commitPrepared(prepared, [cursorOp], true);
    this.o.log.info({ event: 'notified', account: a.id, events: listed.length, to: a.engine.notify.addresses }, 'bounce and complaint summary queued');
    if (mine.length > listed.length || scanned.length === SCAN_LIMIT) this.schedule(a);
    return listed.length;
  }
}

/*
 * dsn-notices.ts — the engine's delivery status notifications (RFC 3464) to a
 * message's original envelope sender, built by common/dsn.ts and put on the
 * delivery queue like any copy, in the same batch as the outcome they report.
 *
 * Who gets them: the sender of a message that came through a forwarder (the
 * listener saw its X-Postino-Spool-Id: the forwarder's applications have no
 * other way to hear of a failure) or whose client gave DSN parameters (RFC
 * 3461) at the listener. A client that talks to the listener directly without
 * them gets events and webhooks only, as before: a relay of our own customers'
 * mail does not answer every bounce with a mail unless asked to.
 *
 * When (per copy, i.e. per recipient; RFC 3461 4.1 NOTIFY, none = FAILURE,DELAY):
 *   failed    the copy bounced (5xx), expired (delivery.maxAgeSeconds), or moved
 *             to the failed records; and the recipients of a message the rewrap
 *             gave up on (dead letter)                  NOTIFY has FAILURE
 *   delayed   still deferred engine.dsnDelayWarningSeconds after it was queued;
 *             once per copy                             NOTIFY has DELAY
 *   relayed   handed to the MTA cluster (our `delivered`); Action `relayed`
 *             because the cluster is given no NOTIFY=SUCCESS, so nobody reports
 *             the final delivery (RFC 3461 6.2)       NOTIFY has SUCCESS
 * Never: for a message whose sender is <> (RFC 3461 6.2, RFC 5321 6.1; this
 * includes our DSNs and notifications, so a DSN cannot cause another one).
 * The DSN goes out with the null return path <>, tag DSN_TAG, and carries
 * ENVID as Original-Envelope-Id and ORCPT as Original-Recipient; RET=FULL
 * returns the copy whole up to MAX_RETURNED_MESSAGE_BYTES on failure,
 * otherwise (and always for delayed/relayed) its header section. What is
 * quoted is the copy as delivered (rewrapped), the only form the engine keeps.
 *
 * Config: engine.hostname (Reporting-MTA), engine.dsnDelayWarningSeconds (14400 = 4 h; 0 = never).
 * Side effects: reads the copy's body; writes the DSN's body (inline or blob) via prepare().
 */
import type { Readable } from 'node:stream';
import { buildDsn, MAX_RETURNED_MESSAGE_BYTES, readHeaderSection, wantsNotice, type DsnAction } from '../../common/dsn.js';
import type { PreparedOps } from '../../common/dead-letter.js';
import { newQueueId, type DurableQueue, type Prepared, type QueueRecord } from '../../common/durable-queue.js';
import type { SmtpReply } from '../../common/smtp-client.js';
import type { CopyDsn, DeliveryMeta } from './delivery-record.js';

export const DSN_TAG = 'postino-dsn';

/** What a notice says about one recipient. */
export interface NoticeRecipient {
  recipient: string;
  dsn: CopyDsn;
  /** The last reply about it, if a server gave one. */
  reply?: SmtpReply | undefined;
}

export interface NoticeInput {
  action: DsnAction;
  account: string;
  /** The intake message (for the log and the DSN's Message-ID). */
  intakeId: string;
  /** The original envelope sender: the DSN's recipient. */
  sender: string;
  arrivalDate: Date;
  recipients: NoticeRecipient[];
  reason: string;
  relay?: string | undefined;
  /** The message reported on (the copy, or the intake message), read only as needed. */
  original: { size: number; open(): Promise<Readable>; read(): Promise<Buffer> };
}

/** Whether a copy with this meta reports to its sender at all, and for this action. */
export function wantsCopyNotice(m: DeliveryMeta, action: DsnAction): boolean {
  return m.dsn !== undefined && m.sender !== '' && m.tag !== DSN_TAG && wantsNotice(m.dsn.notify, action);
}

/** The header section of the original, or a note when it cannot be read (a poison message's body may be gone). */
async function quotedHeaders(original: NoticeInput['original']): Promise<string> {
  try {
    return await readHeaderSection(await original.open());
  } catch (e) {
    return `X-Postino-Note: the original message could not be read (${e instanceof Error ? e.message.replace(/[\r\n]+/g, ' ').slice(0, 200) : 'unknown error'})\r\n`;
  }
}

/**
 * Builds the DSN and prepares it on the delivery queue; the caller commits the
 * ops in the batch that records the outcome (or discards them). Undefined when
 * no recipient asked for this notice.
 */
export async function prepareNotice(queue: DurableQueue<DeliveryMeta>, hostname: string, n: NoticeInput, now: number): Promise<Prepared<DeliveryMeta> | undefined> {
  const wanted = n.recipients.filter((r) => wantsNotice(r.dsn.notify, n.action));
  if (n.sender === '' || wanted.length === 0) return undefined;
  const first = wanted[0]!.dsn;
  let originalMessage: Buffer | undefined;
  if (n.action === 'failed' && first.ret === 'FULL' && n.original.size <= MAX_RETURNED_MESSAGE_BYTES) {
    originalMessage = await n.original.read().catch(() => undefined);
  }
  const orcpt = Object.fromEntries(wanted.flatMap((r) => (r.dsn.orcpt ? [[r.recipient, r.dsn.orcpt]] : [])));
  const body = await buildDsn(
    {
      action: n.action,
      hostname,
      queueId: n.intakeId,
      sender: n.sender,
      arrivalDate: n.arrivalDate,
      recipients: wanted.map((r) => ({ recipient: r.recipient, ...(r.reply ?? { code: 0, enhanced: '', response: '' }) })),
      reason: n.reason,
      relay: n.relay,
      originalHeaders: originalMessage ? '' : await quotedHeaders(n.original),
      originalMessage,
      envid: first.envid,
      orcpt,
    },
    new Date(now),
  );
  const id = newQueueId(now);
  const meta: DeliveryMeta = {
    envelope: { mailFrom: '', rcptTo: [n.sender], clientAddress: '127.0.0.1', heloName: hostname, receivedAt: now, tls: false },
    pending: [n.sender],
    intakeId: n.intakeId,
    account: n.account,
    recipient: n.sender,
    sender: '',
    stream: 'transactional',
    tag: DSN_TAG,
  };
  return queue.prepare({ id, meta, body });
}

/** A notice about one copy (its own recipient, parameters and body). */
export function copyNotice(queue: DurableQueue<DeliveryMeta>, rec: QueueRecord<DeliveryMeta>, action: DsnAction, what: { reason: string; reply?: SmtpReply | undefined; relay?: string | undefined }): NoticeInput {
  const m = rec.meta;
  return {
    action,
    account: m.account,
    intakeId: m.intakeId,
    sender: m.sender,
    arrivalDate: new Date(m.envelope.receivedAt || rec.enqueuedAt),
    recipients: [{ recipient: m.recipient, dsn: m.dsn ?? {}, reply: what.reply }],
    reason: what.reason,
    relay: what.relay,
    original: { size: rec.body.size, open: () => queue.openBody(rec), read: () => queue.readBody(rec) },
  };
}

/** A prepared notice as PreparedOps (for a dead letter's batch): committed → counted on the queue, else its body removed. */
export function noticeOps(queue: DurableQueue<DeliveryMeta>, p: Prepared<DeliveryMeta> | undefined): PreparedOps | undefined {
  return p && { ops: p.ops, settle: () => queue.added(1), abandon: () => void p.discard() };
}

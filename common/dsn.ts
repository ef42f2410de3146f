/*
 * dsn.ts — delivery status notifications (RFC 3464) to a message's original
 * envelope sender, one builder for both stages: the forwarder's (the hosted
 * side refused recipients for good, its retry limit ran out, or NOTIFY=SUCCESS
 * to a listener without DSN) and the engine's (a copy bounced, expired or
 * failed; a copy still deferred after engine.dsnDelayWarningSeconds; a copy
 * handed to the MTA cluster for NOTIFY=SUCCESS: engine/delivery/dsn-notices.ts).
 *
 * Standards: RFC 3464 (message/delivery-status), RFC 6522 (multipart/report),
 * RFC 3463 (status codes), RFC 3834 (Auto-Submitted). Built with nodemailer's
 * MIME builder (MimeNode): a human-readable part, the delivery-status part with
 * one block per failed recipient, and the original message's header section
 * (text/rfc822-headers, as Postfix does by default: never the whole body).
 * The DSN is sent with the null sender (MAIL FROM:<>), so it can never cause
 * another DSN; no DSN is made for a message whose sender was <>.
 *
 * The sender's RFC 3461 parameters, when it gave them (`dsnRecipients`):
 * a recipient whose NOTIFY lacks FAILURE (NEVER included) is not reported;
 * ENVID comes back as Original-Envelope-Id, ORCPT as Original-Recipient;
 * RET=FULL returns the whole message (message/rfc822) up to
 * MAX_RETURNED_MESSAGE_BYTES, else, and with RET=HDRS or none, the headers.
 * Actions (RFC 3464 2.3.3): `failed` (Status 5.x.x), `delayed` (4.x.x: still
 * being retried), `relayed` (2.0.0: handed to a next hop that reports no
 * success of its own, RFC 3461 6.2; only the headers are returned).
 *
 * Config: forwarder.hostname / engine.hostname (Reporting-MTA, MAILER-DAEMON@<hostname>).
 * Side effects: none (returns bytes).
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import MimeNode from 'nodemailer/lib/mime-node';
import type { RecipientFailure } from './smtp-client.js';

/** The original header section quoted in the DSN is cut here (Postfix: header only, no body). */
const MAX_QUOTED_HEADER_BYTES = 64 * 1024;
/** RET=FULL returns messages up to this size whole (Postfix's bounce_size_limit); larger ones, their headers. */
export const MAX_RETURNED_MESSAGE_BYTES = 50_000;

/** RFC 3464 2.3.3 Action values we send. */
export type DsnAction = 'failed' | 'delayed' | 'relayed';

/** RFC 3461 4.1 NOTIFY keyword that asks for each action. */
const NOTIFY_FOR: Record<DsnAction, 'FAILURE' | 'DELAY' | 'SUCCESS'> = { failed: 'FAILURE', delayed: 'DELAY', relayed: 'SUCCESS' };

/**
 * Whether a recipient with this NOTIFY list (undefined: the client gave none)
 * asked for a notice of this action. No NOTIFY means FAILURE,DELAY: RFC 3461 4.1
 * lets an MTA read it either as FAILURE or as FAILURE,DELAY, and a sender who
 * gave none still hears about mail stuck for hours (sendmail's practice; the
 * delay notice itself only exists where a threshold is configured).
 */
export function wantsNotice(notify: readonly string[] | undefined, action: DsnAction): boolean {
  return notify === undefined ? action !== 'relayed' : notify.includes(NOTIFY_FOR[action]);
}

export interface DsnInput {
  hostname: string;
  queueId: string;
  sender: string;
  arrivalDate: Date;
  /** The recipients reported, each with the last reply about it (code 0: no SMTP reply, `reason` is used). */
  recipients: RecipientFailure[];
  /** Why, in words (refused by the relay, the retry limit, still deferred). */
  reason: string;
  /** `failed` (default), `delayed` (still retried) or `relayed` (the next hop took it: NOTIFY=SUCCESS). */
  action?: DsnAction | undefined;
  /** The relay that gave the answer, if any. */
  relay?: string | undefined;
  originalHeaders: string;
  /** RET=FULL and small enough: the whole message, returned instead of its headers. */
  originalMessage?: Buffer | undefined;
  /** ENVID of the original transaction (RFC 3461 4.4). */
  envid?: string | undefined;
  /** ORCPT per recipient (`rfc822;addr`, RFC 3461 4.2). */
  orcpt?: Readonly<Record<string, string>> | undefined;
}

/** RFC 3461 4.1: report a failure for this recipient unless its NOTIFY leaves FAILURE out (NEVER does). */
export function wantsFailureNotice(dsn: { rcpt?: Record<string, { notify?: string[] }> } | undefined, recipient: string): boolean {
  return wantsNotice(dsn?.rcpt?.[recipient]?.notify, 'failed');
}

/** Reads the header section of a spooled message (up to the empty line, at most 64 KiB). */
export async function readHeaderSection(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of body as AsyncIterable<Buffer>) {
      chunks.push(c);
      size += c.length;
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end !== -1) return all.subarray(0, end + 2).toString('utf8');
      if (size >= MAX_QUOTED_HEADER_BYTES) return all.subarray(0, MAX_QUOTED_HEADER_BYTES).toString('utf8');
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    body.destroy();
  }
}

function hostOf(relay: string | undefined): string | undefined {
  if (!relay) return undefined;
  try {
    return new URL(relay).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return undefined;
  }
}

/** One line, no CR/LF: a remote reply must not inject fields into our report. */
function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').trim();
}

export function humanText(d: DsnInput): string {
  if (d.action === 'relayed') {
    return [
      `This is the mail system at host ${d.hostname}.`,
      '',
      'Your message was relayed to the following recipients, as you asked. The system',
      'it went to sends no delivery notifications, so this is the last notice about it.',
      '',
      ...d.recipients.map((f) => `<${f.recipient}>: relayed`),
      '',
    ].join('\r\n');
  }
  if (d.action === 'delayed') {
    return [
      `This is the mail system at host ${d.hostname}.`,
      '',
      '####################################################################',
      '# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #',
      '####################################################################',
      '',
      'Your message could not be delivered yet to the following recipients.',
      'Delivery is still being attempted; you will be told if it fails for good.',
      '',
      ...d.recipients.map((f) => `<${f.recipient}>: ${oneLine(f.response) || d.reason}`),
      '',
    ].join('\r\n');
  }
  const lines = [
    `This is the mail system at host ${d.hostname}.`,
    '',
    "I'm sorry to have to inform you that your message could not",
    'be delivered to one or more recipients. Its headers are attached below.',
    '',
    ...d.recipients.map((f) => `<${f.recipient}>: ${oneLine(f.response) || d.reason}`),
    '',
  ];
  return lines.join('\r\n');
}

/** The Status field: the reply's enhanced code when its class fits the action (RFC 3464 2.3.4), else the generic one. */
function statusFor(action: DsnAction, enhanced: string): string {
  const cls = action === 'failed' ? '5' : action === 'delayed' ? '4' : '2';
  return new RegExp(`^${cls}\\.\\d{1,3}\\.\\d{1,3}$`).test(enhanced) ? enhanced : `${cls}.0.0`;
}

export function deliveryStatus(d: DsnInput): string {
  const remote = hostOf(d.relay);
  const perMessage = [
    ...(d.envid ? [`Original-Envelope-Id: ${oneLine(d.envid)}`] : []),
    `Reporting-MTA: dns; ${d.hostname}`,
    `X-Postino-Queue-ID: ${d.queueId}`,
    `Arrival-Date: ${d.arrivalDate.toUTCString()}`,
  ];
  const action = d.action ?? 'failed';
  const perRecipient = d.recipients.map((f) => {
    const status = statusFor(action, f.enhanced);
    const orcpt = d.orcpt?.[f.recipient];
    const semi = orcpt?.indexOf(';') ?? -1;
    const lines = [
      ...(orcpt && semi > 0 ? [`Original-Recipient: ${oneLine(orcpt.slice(0, semi))}; ${oneLine(orcpt.slice(semi + 1))}`] : []),
      `Final-Recipient: rfc822; ${f.recipient}`,
      `Action: ${action}`,
      `Status: ${status}`,
    ];
    if (remote) lines.push(`Remote-MTA: dns; ${remote}`);
    lines.push(f.code > 0 ? `Diagnostic-Code: smtp; ${oneLine(f.response)}` : `Diagnostic-Code: x-postino; ${oneLine(d.reason)}`);
    return lines.join('\r\n');
  });
  return [perMessage.join('\r\n'), ...perRecipient].join('\r\n\r\n') + '\r\n';
}

/** The complete DSN message (CRLF line endings), ready to spool. */
export async function buildDsn(d: DsnInput, now = new Date()): Promise<Buffer> {
  const root = new MimeNode('multipart/report', { hostname: d.hostname, newline: 'win', baseBoundary: randomBytes(8).toString('hex') });
  root.setHeader({
    From: `Mail Delivery System <MAILER-DAEMON@${d.hostname}>`,
    To: d.sender,
    Subject: d.action === 'relayed' ? 'Successful Mail Delivery Report' : d.action === 'delayed' ? 'Delayed Mail (still being retried)' : 'Undelivered Mail Returned to Sender',
    Date: now,
    'Auto-Submitted': 'auto-replied',
    'Message-ID': `<${d.queueId}.${Date.now().toString(36)}@${d.hostname}>`,
  });
  // MimeNode keeps the parameters of a Content-Type it is given.
  root.setHeader('Content-Type', 'multipart/report; report-type=delivery-status');
  root.createChild('text/plain; charset=utf-8').setHeader('Content-Description', 'Notification').setContent(humanText(d));
  root
    .createChild('message/delivery-status')
    .setHeader('Content-Description', 'Delivery report')
    .setHeader('Content-Transfer-Encoding', '7bit')
    .setContent(deliveryStatus(d));
  if (d.originalMessage) {
    root.createChild('message/rfc822').setHeader('Content-Description', 'Undelivered Message').setHeader('Content-Transfer-Encoding', '8bit').setContent(d.originalMessage);
  } else {
    root
      .createChild('text/rfc822-headers')
      .setHeader('Content-Description', d.action === 'failed' || d.action === undefined ? 'Undelivered Message Headers' : 'Message Headers')
      .setHeader('Content-Transfer-Encoding', '8bit')
      .setContent(d.originalHeaders);
  }
  return root.build();
}

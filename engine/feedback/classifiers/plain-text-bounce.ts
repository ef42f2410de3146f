/*
 * plain-text-bounce.ts (classifier) — a bounce without a delivery-status
 * part: qmail ("Hi. This is the qmail-send program…", "<addr>:" then the
 * reason), Exim ("This message was created automatically by mail delivery
 * software", an indented address then "SMTP error from remote mail server…"),
 * old Sendmail ("----- The following addresses had permanent fatal errors
 * -----"), Exchange ("Delivery has failed to these recipients or groups",
 * "Remote Server returned '550 5.1.1 …'"), Yahoo ("Sorry, we were unable to
 * deliver your message…", "554: delivery error: dd …"), and generic
 * "Undeliverable" / "Mail delivery failed" / "Returned mail" notices, in the
 * languages of the phrase tables below.
 *
 * How: the text is cut where the returned original begins (its own text must
 * not be read as the reason); a line that is only an address (optionally in
 * <>, with ":" or " on <date>") starts a recipient, the lines under it until a
 * blank line are its diagnostic. Without such lines, a single address named
 * in the text is the recipient. Status comes from the diagnostic (RFC 3463
 * code, else phrase, see bounce-class.ts), else from the whole notice.
 * Evidence needed: a mailer-daemon sender, a bounce subject or a template
 * phrase; and then a recipient or a reason, else the next classifier says why.
 * Standards: RFC 3463, RFC 5321 4.5.5 (bounces come from the null sender).
 * Every scan is one pass over lines of at most MAX_TEXT_CHARS.
 * Config: none. Side effects: none.
 */
import { inferStatus, findEnhancedStatus, resolveFailure } from '../bounce-class.js';
import { splitAddress } from '../../../common/address.js';
import { addressOf, linesOf } from '../report-fields.js';
import { header, type ReportInput } from '../report-input.js';
import type { ReportClassifier, ReportRecipient } from '../report.js';
import { bounceRefs } from './bounce-refs.js';

/** Local parts and display names of the programs that send bounces. */
const DAEMON_LOCAL = /^(?:mailer-daemon|mailerdaemon|mailer_daemon|postmaster|mail-daemon|mdaemon|bounce|bounces|nobody|mail-delivery|maildelivery)$/;
const DAEMON_NAME = /mail delivery|mailer-daemon|postmaster|delivery subsystem|mail administrator|system administrator|mail system|почтовая служба|mailzustellung/;

/** Subjects of delivery-failure notices. */
const BOUNCE_SUBJECT =
  /undeliver|undelivered|delivery status notification|delivery (?:has )?fail|mail delivery failed|delivery failure|failure notice|returned mail|returned to sender|could not be delivered|not delivered|delivery problem|warning: message|delayed mail|nicht zustellbar|unzustellbar|unzustellbare|non remis|non distribuable|échec de (?:la )?remise|no (?:se pudo )?entregad|no entregado|devuelto|non recapitabil|mancato recapito|não entregue|falha na entrega|onbestelbaar|niet bezorgd|не доставлено|недоставлен|ошибка доставки/;

/** Phrases of bounce templates, in the notice's text. */
const TEMPLATE_PHRASES =
  /this is the qmail-send program|created automatically by mail delivery software|addresses had permanent fatal errors|addresses had transient non-fatal errors|delivery has failed to these recipients|remote server returned|unable to deliver your message|could not be delivered|couldn't be delivered|wasn't delivered|was not delivered|delivery to the following recipient|permanent error|failed permanently|message not delivered|did not reach some or all|following recipient\(s\) cannot be reached|konnte nicht zugestellt werden|nicht zugestellt|n'a pas pu être (?:remis|distribué)|n’a pas pu être (?:remis|distribué)|no se (?:ha )?pudo entregar|no ha podido ser entregado|non è stato possibile recapitare|non è stato recapitato|não foi possível entregar|não pôde ser entregue|kon niet worden bezorgd|kon niet worden afgeleverd|не может быть доставлено|не удалось доставить|не было доставлено/;

/** A notice that the message is still being tried (a delay warning, not a failure). */
const DELAY_PHRASES = /has not yet been delivered|not been delivered yet|will continue (?:trying|to try)|will keep trying|still trying|delivery (?:has been |is )?delayed|message delayed|delayed \d+ (?:hours|minutes|days)|temporarily deferred|transient non-fatal errors|will retry|verzögert|retardé|retrasad|ritardat|atrasad|vertraagd|задерж/;

/** Where the returned original starts in the text (everything after is the original, not the notice). */
const ORIGINAL_MARKERS = [
  '--- below this line is a copy of the message.',
  'this is a copy of the message, including all the headers.',
  "this is a copy of the message's headers.",
  '----- original message follows -----',
  '----- unsent message follows -----',
  '----- message header follows -----',
  '----- original message -----',
  '-----original message-----',
  'original message headers:',
  '------ original message ------',
];

/** Lines read per notice and per recipient diagnostic. */
const MAX_LINES = 5000;
const MAX_DIAG_LINES = 20;
/** An address line is short; a longer line is prose. */
const MAX_ADDRESS_LINE = 330;

/** Sent by a mail system (not a person's auto-responder): the From is a daemon. */
export function fromMailerDaemon(input: ReportInput): boolean {
  const from = header(input, 'from') ?? '';
  const address = addressOf(from) ?? from;
  const local = (splitAddress(address)?.local ?? address).toLowerCase().trim();
  return DAEMON_LOCAL.test(local) || DAEMON_NAME.test(from.toLowerCase());
}

export function bounceSubject(input: ReportInput): boolean {
  return BOUNCE_SUBJECT.test(input.subject.toLowerCase());
}

/** A delivery-failure notice for sure: a daemon's, with a bounce subject or template. autoReply steps aside for these. */
export function isDeliveryFailureNotice(input: ReportInput): boolean {
  return fromMailerDaemon(input) && (bounceSubject(input) || TEMPLATE_PHRASES.test(noticeText(input.text).lower));
}

export const plainTextBounce: ReportClassifier = {
  name: 'plainTextBounce',
  classify(input) {
    const notice = noticeText(input.text);
    if (!fromMailerDaemon(input) && !bounceSubject(input) && !TEMPLATE_PHRASES.test(notice.lower)) return undefined;
    const delayed = DELAY_PHRASES.test(notice.lower) || /warning|delayed|verzögert|retardé/.test(input.subject.toLowerCase());
    const own = ownAddresses(input);
    let entries = addressEntries(notice.text, own);
    if (entries.length === 0) {
      const single = singleAddress(notice.text, own);
      if (single) entries = [{ address: single, lines: [] }];
    }
    const overall = noticeReason(notice.text);
    if (entries.length === 0 && !overall) return undefined;
    const recipients: ReportRecipient[] = (entries.length ? entries : [{ address: undefined, lines: [] }]).map((e) => {
      const lines = e.lines.join('\n');
      const readable = lines && (findEnhancedStatus(lines) || inferStatus(lines)) ? lines : (overall ?? lines);
      const resolved = resolveFailure(undefined, readable);
      return {
        recipient: e.address,
        action: delayed ? 'delayed' : 'failed',
        status: resolved.status,
        diagnostic: (lines || overall || '').slice(0, 1000) || undefined,
        class: delayed ? 'soft' : resolved.class,
      };
    });
    const refs = bounceRefs({ ...input, originalHeaders: input.originalHeaders ?? inlineOriginalHeaders(notice.rest) });
    return { kind: 'bounce', format: 'plain-text', recipients, refs };
  },
};

interface Notice {
  /** The notice's own text, before the returned original. */
  text: string;
  lower: string;
  /** What follows the original marker (the inline original), '' when there is none. */
  rest: string;
}

/** The text up to the first original marker. */
function noticeText(text: string): Notice {
  const lowerAll = text.toLowerCase();
  const source = lowerAll.length === text.length ? text : lowerAll; // a case mapping that changes length: work in lower case
  let cut = -1;
  let markerLen = 0;
  for (const m of ORIGINAL_MARKERS) {
    const at = lowerAll.indexOf(m);
    if (at !== -1 && (cut === -1 || at < cut)) {
      cut = at;
      markerLen = m.length;
    }
  }
  if (cut === -1) return { text: source, lower: lowerAll, rest: '' };
  const lineStart = source.lastIndexOf('\n', cut) + 1;
  const lineEnd = source.indexOf('\n', cut + markerLen);
  return { text: source.slice(0, lineStart), lower: lowerAll.slice(0, lineStart), rest: lineEnd === -1 ? '' : source.slice(lineEnd + 1) };
}

/** Addresses of the report itself (our bounce address, the daemon): never a failed recipient. */
function ownAddresses(input: ReportInput): Set<string> {
  const own = new Set<string>();
  for (const name of ['from', 'to', 'delivered-to', 'x-original-to', 'return-path', 'sender']) {
    const a = addressOf(header(input, name));
    if (a) own.add(a.toLowerCase());
  }
  return own;
}

interface Entry {
  address: string | undefined;
  lines: string[];
}

/** Lines that hold only an address start a recipient; the lines under one, to a blank line, are its reason. */
function addressEntries(text: string, own: ReadonlySet<string>): Entry[] {
  const byAddress = new Map<string, Entry>();
  let current: Entry | undefined;
  for (const raw of linesOf(text, MAX_LINES)) {
    const line = raw.trim();
    const address = line.length <= MAX_ADDRESS_LINE ? addressLine(line) : undefined;
    if (address && !own.has(address.toLowerCase())) {
      const key = address.toLowerCase();
      current = byAddress.get(key) ?? { address, lines: [] };
      byAddress.set(key, current);
    } else if (line === '') current = undefined;
    else if (current && current.lines.length < MAX_DIAG_LINES) current.lines.push(line);
  }
  return [...byAddress.values()];
}

/** "bob@example.com", "<bob@example.com>:", "bob@example.com on 1/2/2024 10:00" → the address. */
function addressLine(line: string): string | undefined {
  if (!line.includes('@')) return undefined;
  let t = line;
  const on = t.indexOf(' on ');
  if (on > 0) t = t.slice(0, on);
  t = t.replace(/:$/, '').trim();
  if (t.startsWith('<') && t.endsWith('>')) t = t.slice(1, -1);
  if (/[\s<>"(),;]/.test(t)) return undefined;
  const at = t.indexOf('@');
  if (at <= 0 || at !== t.lastIndexOf('@') || at === t.length - 1 || !t.slice(at + 1).includes('.')) return undefined;
  return t;
}

/** The one address the notice names (other than its own), if it names exactly one. */
function singleAddress(text: string, own: ReadonlySet<string>): string | undefined {
  const found = new Set<string>();
  for (const word of text.split(/\s+/)) {
    if (!word.includes('@')) continue;
    const a = addressOf(word);
    if (a && addressLine(a) && !own.has(a.toLowerCase())) found.add(a.toLowerCase());
    if (found.size > 1) return undefined;
  }
  return found.size === 1 ? [...found][0] : undefined;
}

/** The first line of the notice that names a status code or a known reason. */
function noticeReason(text: string): string | undefined {
  for (const raw of linesOf(text, MAX_LINES)) {
    const line = raw.trim();
    if (line && (findEnhancedStatus(line) || inferStatus(line))) return line;
  }
  return undefined;
}

/** The header block of an original quoted inline after the marker (indentation removed). */
function inlineOriginalHeaders(rest: string): Buffer | undefined {
  if (!rest) return undefined;
  const lines: string[] = [];
  let indent = -1;
  let bytes = 0;
  for (const raw of linesOf(rest, MAX_LINES)) {
    if (raw.trim() === '') {
      if (lines.length) break;
      continue; // blank lines between the marker and the headers
    }
    if (indent === -1) indent = raw.length - raw.trimStart().length;
    const line = raw.slice(Math.min(indent, raw.length - raw.trimStart().length));
    bytes += line.length + 2;
    if (bytes > 256 * 1024) break;
    lines.push(line);
  }
  return lines.length ? Buffer.from(lines.join('\r\n') + '\r\n') : undefined;
}

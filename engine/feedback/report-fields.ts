/*
 * report-fields.ts — the field syntax reports share: RFC 3464 delivery-status
 * bodies (one per-message group, then one group per recipient, groups
 * separated by blank lines), RFC 5965 feedback-report bodies (one group), and
 * the header block of the original a report returns (what identifies OUR copy).
 *
 * Standards: RFC 3464 2.1 (field groups, header-style fields with folding),
 * 2.3.1/2.3.2 (address-type ";" address: "rfc822;", RFC 6533 "utf-8;"),
 * 2.3.6 (diagnostic-type ";" text: "smtp;", "X-Postfix;"), RFC 5965 3.1,
 * RFC 5322 3.4 (addresses), 3.6.4 (Message-ID).
 * Every function is one forward pass over its text; group and field counts
 * are capped so a hostile part cannot make a huge table.
 * Config: none. Side effects: none.
 */
import { parseHeaderBlock } from '../../common/mime-header.js';
import { fieldMap } from './report-input.js';
import type { OriginalRefs } from './report.js';

/** Recipient groups read from one delivery-status part (a DSN to 1,000 recipients is already odd). */
export const MAX_FIELD_GROUPS = 1000;
/** Fields kept in one group. */
const MAX_FIELDS_PER_GROUP = 64;
/** Characters kept of one field value (an SMTP reply text is at most a few lines). */
const MAX_FIELD_CHARS = 4096;

export type FieldGroup = ReadonlyMap<string, string>;

/** The lines of a text (CR of CRLF removed), at most `max`: one forward pass. */
export function* linesOf(text: string, max: number): Generator<string> {
  let count = 0;
  for (let pos = 0; pos < text.length && count < max; count++) {
    let nl = text.indexOf('\n', pos);
    if (nl === -1) nl = text.length;
    yield text.slice(pos, nl > pos && text[nl - 1] === '\r' ? nl - 1 : nl);
    pos = nl + 1;
  }
}

/** Field groups of a delivery-status or feedback-report body: lower-case name → first value. */
export function fieldGroups(body: string): FieldGroup[] {
  const groups: Map<string, string>[] = [];
  let group: Map<string, string> | undefined;
  let last: string | undefined; // name of the field a continuation line extends
  for (const line of linesOf(body, Number.MAX_SAFE_INTEGER)) {
    if (groups.length > MAX_FIELD_GROUPS) break;
    if (line.trim() === '') {
      group = undefined;
      last = undefined;
      continue;
    }
    if ((line[0] === ' ' || line[0] === '\t') && group && last !== undefined) {
      const v = group.get(last) ?? '';
      if (v.length < MAX_FIELD_CHARS) group.set(last, (v + ' ' + line.trim()).slice(0, MAX_FIELD_CHARS));
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) {
      last = undefined; // not a field: garbage is skipped, not guessed at
      continue;
    }
    if (!group) {
      group = new Map();
      groups.push(group);
    }
    const name = line.slice(0, colon).trim().toLowerCase();
    if (group.size < MAX_FIELDS_PER_GROUP && !group.has(name)) group.set(name, line.slice(colon + 1).trim().slice(0, MAX_FIELD_CHARS));
    last = group.has(name) ? name : undefined;
  }
  return groups.slice(0, MAX_FIELD_GROUPS);
}

/** "rfc822; <a@example.com>" → "a@example.com"; "dns; mx.example.net" → "mx.example.net"; a value without a type is kept. */
export function stripType(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const semi = value.indexOf(';');
  const typed = semi > 0 && /^[A-Za-z0-9][A-Za-z0-9.\-]{0,40}$/.test(value.slice(0, semi).trim());
  const rest = (typed ? value.slice(semi + 1) : value).trim();
  return rest === '' ? undefined : rest;
}

/** The first address in a header value or a line: inside <…> if there is one, else the first word with an @. */
export function addressOf(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const lt = value.indexOf('<');
  if (lt !== -1) {
    const gt = value.indexOf('>', lt);
    const inner = value.slice(lt + 1, gt === -1 ? undefined : gt).trim();
    if (inner === '' || inner.includes('@')) return inner === '' ? undefined : inner;
  }
  for (const word of value.split(/[\s,;()"]+/)) {
    const w = word.replace(/^[<'[]+|[>'\].:]+$/g, '');
    if (w.includes('@') && w.indexOf('@') > 0 && w.indexOf('@') < w.length - 1) return w;
  }
  return undefined;
}

/** The first <…> of a Message-ID field, brackets kept (the form our events use). */
export function messageIdOf(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const lt = value.indexOf('<');
  const gt = lt === -1 ? -1 : value.indexOf('>', lt);
  if (lt !== -1 && gt > lt + 1) return value.slice(lt, gt + 1);
  const bare = value.trim();
  return bare && !/\s/.test(bare) ? `<${bare}>` : undefined;
}

const POSTINO_PREFIX = 'x-postino-';

/** What identifies our copy in the original's header block. */
export function originalRefs(headerBlock: Buffer | undefined): OriginalRefs {
  const refs: OriginalRefs = { postinoHeaders: {} };
  if (!headerBlock || headerBlock.length === 0) return refs;
  const fields = fieldMap(parseHeaderBlock(headerBlock));
  refs.returnPath = addressOf(fields.get('return-path')?.[0]);
  refs.messageId = messageIdOf(fields.get('message-id')?.[0]);
  refs.recipient = addressOf(fields.get('to')?.[0]);
  refs.ref = fields.get('x-message-ref')?.[0]?.trim() || undefined;
  for (const [name, values] of fields) {
    if (name.startsWith(POSTINO_PREFIX) && values[0] !== undefined) refs.postinoHeaders[name] = values[0];
  }
  return refs;
}

/*
 * merge-fields.ts (copy step) — `{{field}}` and `{{field|default}}` in the
 * Subject and the body parts, looked up in X-Postino-Vars (and mapped vars),
 * then the recipient database, then the built-ins `email` and
 * `unsubscribe_url`; a field found nowhere gives its default or ''. Values are
 * HTML-escaped in HTML parts. Per-recipient literal substitutions (SendGrid
 * `sub`) apply too. Tags are found by a scanner for `{{…}}` (merge syntax, not
 * HTML: the HTML itself is never parsed with a regular expression).
 */
import { normalizeEmail } from '../../../common/address.js';
import { decodeWords, encodeUnstructured, getHeader, makeField } from '../../../common/mime-header.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

const FIELD = /^\s*([A-Za-z0-9_.-]+)\s*(?:\|([^}]*))?$/;

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Replaces every merge tag; `lookup` returns undefined for an unknown field. */
export function mergeText(text: string, lookup: (name: string) => string | undefined, escape: (s: string) => string): string {
  if (!text.includes('{{')) return text;
  let out = '';
  let pos = 0;
  for (;;) {
    const open = text.indexOf('{{', pos);
    if (open === -1) break;
    const close = text.indexOf('}}', open + 2);
    if (close === -1) break;
    const m = FIELD.exec(text.slice(open + 2, close));
    if (!m) {
      out += text.slice(pos, open + 2);
      pos = open + 2;
      continue;
    }
    out += text.slice(pos, open) + escape(lookup(m[1]!) ?? m[2] ?? '');
    pos = close + 2;
  }
  return out + text.slice(pos);
}

function substitute(text: string, subs: ReadonlyArray<[string, string]>, escape: (s: string) => string): string {
  for (const [from, to] of subs) if (from && text.includes(from)) text = text.split(from).join(escape(to));
  return text;
}

/** The merge-field lookup of one copy: vars, then the recipient database, then the built-ins. */
export function copyLookup(copy: Copy, msg: MessageContext): (name: string) => string | undefined {
  const c = msg.controls;
  const rec = msg.recipientRecords.get(normalizeEmail(copy.recipient));
  const builtins: Record<string, string | undefined> = { email: copy.recipient, unsubscribe_url: copy.unsubscribeUrl };
  return (name) => (Object.hasOwn(c.vars, name) ? c.vars[name] : rec && Object.hasOwn(rec.fields, name) ? rec.fields[name] : builtins[name]);
}

export const mergeFields: CopyStep = {
  name: 'merge-fields',
  async run(copy: Copy, msg: MessageContext) {
    const c = msg.controls;
    const lookup = copyLookup(copy, msg);
    const subs: Array<[string, string]> = [];
    for (const [from, values] of Object.entries(c.substitutions)) {
      const v = values[copy.position];
      if (v !== undefined) subs.push([from, v]);
    }
    const plain = (s: string): string => s;
    const subject = getHeader(copy.headers, 'subject');
    if (subject !== undefined) {
      const decoded = decodeWords(subject);
      const merged = substitute(mergeText(decoded, lookup, plain), subs, plain);
      if (merged !== decoded) {
        const at = copy.headers.findIndex((f) => f.lower === 'subject');
        copy.headers[at] = makeField('Subject', encodeUnstructured(merged));
      }
    }
    for (const part of msg.bodyParts) {
      const esc = part.type === 'text/html' ? escapeHtml : plain;
      const text = await copy.text(msg, part);
      const merged = substitute(mergeText(text, lookup, esc), subs, esc);
      if (merged !== text) copy.texts.set(part.index, merged);
    }
    return NEXT;
  },
};

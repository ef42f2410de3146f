/*
 * merge-fields.ts (copy step) — `{{field}}` and `{{field|default}}` in the
 * Subject, the From display name and the body parts, looked up in
 * X-Postino-Vars (and mapped vars), then the recipient database, then the
 * built-ins `email` and `unsubscribe_url`; a field found nowhere gives its
 * default or ''. Per-recipient literal substitutions (SendGrid `sub`) apply too.
 *
 * Every value is encoded for the place it lands (issue #11): in a header
 * (Subject, display name) CR and LF become a space, so a value cannot add a
 * header line or end the header block (RFC 5322 2.2; non-ASCII then becomes
 * RFC 2047 encoded-words); in HTML it is HTML-escaped, and in an URL attribute
 * (href, src… marked per message by html-rewrite.ts markUrlTags) it is
 * percent-encoded; in text it stays as it is (render.ts writes every line end
 * as CRLF, RFC 2046 4.1.1).
 *
 * A Subject or From over MAX_MERGED_HEADER is left unmerged.
 *
 * Tags are found by a hand scanner (merge syntax, not HTML): linear in the
 * text, because the `}}` of a tag is looked for only within MAX_TAG
 * characters of its `{{`, never to the end of the text for every `{{`.
 *
 * A body part is read only when it may hold a tag or a substitution key
 * (MessageContext.mayContain): a large one without any is probed as a stream
 * and never becomes a string (issue #17: a 10 MB text body did, per message).
 */
import { normalizeEmail } from '../../../common/address.js';
import { decodeWords, encodeUnstructured, fieldValue, makeField, sanitizeHeaderText, unstructuredField } from '../../../common/mime-header.js';
import { markUrlTags, URL_START_MARK, URL_TAG_MARK } from '../html-rewrite.js';
import { nextTurn } from '../../../common/next-turn.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

/** A tag longer than this (`{{` to `}}`) is not a tag: field names and defaults are short, and the bound keeps the scan linear. */
export const MAX_TAG = 256;

/**
 * A Subject or From longer than this is left as it came, unmerged: a real one
 * is under 1 KiB, and re-encoding and folding a megabyte header (nodemailer's
 * encodeWords and foldLines, synchronous) would hold the event loop ~0.5 s.
 */
export const MAX_MERGED_HEADER = 64 * 1024;

/** Characters merged between two turns of the event loop (~10 ms of scanning). */
const PART_SLICE = 256 * 1024;

const FIELD = /^\s*([A-Za-z0-9_.-]+)\s*(?:\|([^}]*))?$/;

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/**
 * A value inside an URL: percent-encoded (RFC 3986 2.1), so it cannot end the
 * attribute, add a query parameter or bring a line break. A value that is the
 * whole URL (`href="{{unsubscribe_url}}"`) is kept when it is http(s) or
 * mailto and has only URL characters, else it is encoded like a part.
 */
export function encodeUrlValue(value: string, wholeUrl: boolean): string {
  if (wholeUrl && /^(https?:\/\/|mailto:)[\x21-\x7e]*$/i.test(value) && !/["'<>\\`]/.test(value)) return value;
  return encodeURIComponent(value);
}

/** How a value is written where a tag was: `url` is true inside a marked URL attribute, `atStart` when the tag begins that URL. */
export type Escape = (value: string, url: boolean, atStart: boolean) => string;

/** The tag scanner, resumable: `run(until)` merges the tags that open before `until`, so a large part is merged a slice at a time. */
class TagMerger {
  private readonly out: string[] = [];
  private pos = 0; // text before pos is written
  /** Where to look for the next `{{`. */
  from = 0;
  done = false;

  constructor(
    private readonly text: string,
    private readonly lookup: (name: string) => string | undefined,
    private readonly escape: Escape,
  ) {}

  run(until: number): void {
    const text = this.text;
    while (!this.done) {
      const open = text.indexOf('{{', this.from);
      if (open === -1) {
        this.done = true;
        break;
      }
      if (open >= until) {
        this.from = open;
        break;
      }
      // The nearest `}}` within MAX_TAG: a bounded scan, so a flood of `{{` costs O(n · MAX_TAG) at most.
      const limit = Math.min(text.length - 1, open + 2 + MAX_TAG);
      let close = -1;
      for (let i = open + 2; i < limit; i++) {
        const c = text.charCodeAt(i);
        if (c === 0x7d && text.charCodeAt(i + 1) === 0x7d) {
          close = i;
          break;
        }
        if (c === 0x7b && text.charCodeAt(i + 1) === 0x7b) break; // a later `{{` starts the next candidate
      }
      // A tag in an URL attribute carries a mark before it (html-rewrite.ts markUrlTags), dropped here whether or not it is a tag.
      const mark = text.charCodeAt(open - URL_TAG_MARK.length) !== 0 ? undefined : text.startsWith(URL_START_MARK, open - URL_START_MARK.length) ? 'start' : text.startsWith(URL_TAG_MARK, open - URL_TAG_MARK.length) ? 'url' : undefined;
      const markStart = mark ? open - URL_TAG_MARK.length : open;
      const m = close === -1 ? null : FIELD.exec(text.slice(open + 2, close));
      if (!m) {
        if (mark) {
          this.out.push(text.slice(this.pos, markStart));
          this.pos = open;
        }
        this.from = open + 1;
        continue;
      }
      const value = this.lookup(m[1]!) ?? m[2] ?? '';
      this.out.push(text.slice(this.pos, markStart), this.escape(value, mark !== undefined, mark === 'start'));
      this.pos = this.from = close + 2;
    }
  }

  result(): string {
    if (this.pos === 0) return this.text;
    this.out.push(this.text.slice(this.pos));
    return this.out.join('');
  }
}

/** Replaces every merge tag; `lookup` returns undefined for an unknown field. */
export function mergeText(text: string, lookup: (name: string) => string | undefined, escape: Escape): string {
  if (!text.includes('{{')) return text;
  const m = new TagMerger(text, lookup, escape);
  m.run(Infinity);
  return m.result();
}

/** mergeText a PART_SLICE at a time, with a turn of the event loop between slices (a body part can be as large as the message). */
export async function mergeTextSliced(text: string, lookup: (name: string) => string | undefined, escape: Escape): Promise<string> {
  if (!text.includes('{{')) return text;
  const m = new TagMerger(text, lookup, escape);
  for (;;) {
    m.run(m.from + PART_SLICE);
    if (m.done) return m.result();
    await nextTurn();
  }
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

const inHeader = (s: string): string => sanitizeHeaderText(s);
const inText = (s: string): string => s;
const inHtml: Escape = (s, url, atStart) => (url ? escapeHtml(encodeUrlValue(s, atStart)) : escapeHtml(s));

/** The display name of a From value (`Name <addr>`), split so only the name is merged; undefined when there is none. */
function splitDisplayName(value: string): { name: string; rest: string } | undefined {
  const lt = value.lastIndexOf('<');
  if (lt <= 0 || !value.endsWith('>')) return undefined;
  return { name: value.slice(0, lt).trim(), rest: value.slice(lt) };
}

/** A merged display name: a quoted-string (RFC 5322 3.2.4) or RFC 2047 words, never a line break. */
function displayName(name: string): string {
  const clean = sanitizeHeaderText(name).replace(/^"(.*)"$/, '$1');
  const encoded = encodeUnstructured(clean);
  return encoded !== clean ? encoded : `"${clean.replace(/["\\]/g, '\\$&')}"`;
}

/** HTML parts (by index) whose text tracking.ts already wrote with its URL-attribute tags marked, per copy. */
const markedByTracking = new WeakMap<Copy, Set<number>>();

/** tracking.ts: this copy's text of the part has its URL-attribute tags marked (one parse per message, not one per copy). */
export function noteUrlTagsMarked(copy: Copy, partIndex: number): void {
  let parts = markedByTracking.get(copy);
  if (!parts) markedByTracking.set(copy, (parts = new Set()));
  parts.add(partIndex);
}

/** Per message: the HTML with its URL-attribute tags marked (markUrlTags parses once per distinct text). */
const marked = new WeakMap<MessageContext, { input: string; output: Promise<string> }>();

function markedHtml(msg: MessageContext, html: string): Promise<string> {
  if (!html.includes('{{')) return Promise.resolve(html);
  let m = marked.get(msg);
  if (!m || m.input !== html) {
    m = { input: html, output: markUrlTags(html) };
    marked.set(msg, m);
  }
  return m.output;
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
    for (let at = 0; at < copy.headers.length; at++) {
      const f = copy.headers[at]!;
      if (f.lower !== 'subject' && f.lower !== 'from') continue;
      if (f.raw.length > MAX_MERGED_HEADER) continue;
      const value = fieldValue(f);
      if (f.lower === 'subject') {
        const decoded = decodeWords(value);
        const merged = substitute(mergeText(decoded, lookup, inHeader), subs, inHeader);
        if (merged !== decoded) copy.headers[at] = await unstructuredField(f.name, merged);
        continue;
      }
      const parts = splitDisplayName(value);
      if (!parts) continue;
      const decoded = decodeWords(parts.name);
      const merged = substitute(mergeText(decoded, lookup, inHeader), subs, inHeader);
      if (merged !== decoded) copy.headers[at] = makeField(f.name, `${displayName(merged)} ${parts.rest}`);
    }
    let work = 0;
    const needles = ['{{', ...subs.map(([from]) => from)];
    for (const part of msg.bodyParts) {
      // Nothing to merge in a part no earlier step changed: it stays as it is, and a large one
      // is not even read into memory (context.ts mayContain; issue #17).
      if (!copy.texts.has(part.index) && !(await msg.mayContain(part, needles))) continue;
      const html = part.type === 'text/html';
      const text = await copy.text(msg, part);
      const input = html && !markedByTracking.get(copy)?.has(part.index) ? await markedHtml(msg, text) : text;
      const merged = substitute(await mergeTextSliced(input, lookup, html ? inHtml : inText), subs, html ? escapeHtml : inText);
      if (merged !== text) copy.texts.set(part.index, merged);
      // Many parts: after each PART_SLICE characters of work the event loop gets a turn.
      work += text.length;
      if (work >= PART_SLICE) {
        work = 0;
        await nextTurn();
      }
    }
    return NEXT;
  },
};

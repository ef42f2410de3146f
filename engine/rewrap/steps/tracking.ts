/*
 * tracking.ts (copy step) — open and click tracking, per X-Postino-Track or
 * the account default (accounts[].engine.track). Clicks: every http(s) link
 * (<a>, <area>) of every HTML body part points to `<publicUrl>/t/c/<token>`,
 * the token signed and carrying the original URL (common/tokens.ts); mailto:,
 * tel:, anchors and our own unsubscribe links are left alone. Opens: a 1×1
 * image `<publicUrl>/t/o/<token>` before </body> of the first HTML part.
 * Plain-text parts are not changed unless `track.textLinks` is on: then their
 * http(s) URLs are rewritten the same way (found by a hand scanner over the
 * text, linear in its length: no backtracking pattern over a whole part; an
 * URL ends at white space, `"`, `<` or `>`, and trailing punctuation is not part of it). The HTML is tokenized with parse5
 * (html-rewrite.ts) once per distinct HTML text of a message and the template
 * is filled per copy with that copy's tokens. It runs before merge-fields.ts,
 * so the HTML is the same for every copy (one parse per message); a link whose
 * URL holds merge tags is merged for this copy before it is signed, and a link
 * that is only a merge tag (`href="{{unsubscribe_url}}"`) is not an http(s)
 * link and is left to merge-fields.ts. Merge values inside a link are
 * percent-encoded (merge-fields.ts encodeUrlValue). The template marks the
 * merge tags of URL attributes in the same parse (html-rewrite.ts), so
 * merge-fields.ts need not parse the filled HTML of each copy again.
 */
import { signClickToken, signOpenToken } from '../../../common/tokens.js';
import { fillHtml, templateHtml, type HtmlTemplate } from '../html-rewrite.js';
import { nextTurn } from '../../../common/next-turn.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';
import { copyLookup, encodeUrlValue, mergeText, noteUrlTagsMarked } from './merge-fields.js';

/** Punctuation that ends a sentence rather than the URL before it. */
const TRAILING_PUNCTUATION = new Set([...'.,;:!?)]\'"']);

/** White space as JavaScript's \s sees it, and the characters that end an URL in text (<, >, "). */
function endsUrl(c: number): boolean {
  return c <= 0x20 || c === 0x3c || c === 0x3e || c === 0x22 || c === 0x7f || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/** Characters of a text part scanned for URLs between two turns of the event loop (~5 ms). */
const URL_SCAN_SLICE = 64 * 1024;

/** The http(s) URLs of a plain text as [start, end) offsets: one pass, each character looked at a bounded number of times. */
export function findTextUrls(text: string): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (const span of textUrls(text)) if (span) spans.push(span);
  return spans;
}

/** findTextUrls with a turn of the event loop after every URL_SCAN_SLICE characters (a part can be as large as the message). */
async function findTextUrlsSliced(text: string): Promise<Array<[number, number]>> {
  const spans: Array<[number, number]> = [];
  for (const span of textUrls(text, URL_SCAN_SLICE)) {
    if (span) spans.push(span);
    else await nextTurn();
  }
  return spans;
}

/** The scan of findTextUrls, as spans; with `slice`, an undefined after every `slice` characters scanned (a place to yield). */
function* textUrls(text: string, slice = Infinity): Generator<[number, number] | undefined> {
  const lower = text.toLowerCase();
  let from = 0;
  let pause = slice;
  for (;;) {
    if (from >= pause) {
      yield undefined;
      pause = from + slice;
    }
    const at = lower.indexOf('http', from);
    if (at === -1) break;
    const scheme = lower.startsWith('://', at + 4) ? 7 : lower.startsWith('s://', at + 4) ? 8 : 0;
    if (scheme === 0) {
      from = at + 4;
      continue;
    }
    let end = at + scheme;
    while (end < text.length && !endsUrl(text.charCodeAt(end))) end++;
    let url = end;
    // At least one character after the scheme stays (as the former pattern's `+?` kept it).
    while (url > at + scheme + 1 && TRAILING_PUNCTUATION.has(text[url - 1]!)) url--;
    if (url > at + scheme) yield [at, url];
    from = end;
  }
}

/** The text with each span replaced by `link` of its text. */
export function replaceSpans(text: string, spans: ReadonlyArray<[number, number]>, link: (url: string) => string): string {
  if (spans.length === 0) return text;
  const out: string[] = [];
  let pos = 0;
  for (const [start, end] of spans) {
    out.push(text.slice(pos, start), link(text.slice(start, end)));
    pos = end;
  }
  out.push(text.slice(pos));
  return out.join('');
}

/**
 * Signing a click token takes tens of microseconds (a sealed token: random IV, AES-GCM): the event
 * loop gets a turn after each slice of this many. 500 held it 30-60 ms on a 1 MB text of URLs.
 */
const LINK_SLICE = 100;

/** Each distinct URL's new link, made a slice at a time with a turn of the event loop between slices. */
async function linkAll(urls: Iterable<string>, link: (url: string) => string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const url of urls) {
    if (out.has(url)) continue;
    out.set(url, link(url));
    if (out.size % LINK_SLICE === 0) await nextTurn();
  }
  return out;
}

/** Distinct HTML texts remembered per message (copies differ only when merge fields differ). */
const TEMPLATE_CACHE_SIZE = 4;
const templates = new WeakMap<MessageContext, Map<string, Promise<HtmlTemplate>>>();

function template(msg: MessageContext, html: string, links: boolean, pixel: boolean): Promise<HtmlTemplate> {
  let cache = templates.get(msg);
  if (!cache) templates.set(msg, (cache = new Map()));
  const key = `${links ? 1 : 0}${pixel ? 1 : 0}${html}`;
  let t = cache.get(key);
  if (!t) {
    if (cache.size >= TEMPLATE_CACHE_SIZE) cache.delete(cache.keys().next().value!);
    t = templateHtml(html, { links, pixel, markTags: true });
    cache.set(key, t);
  }
  return t;
}

export const tracking: CopyStep = {
  name: 'tracking',
  async run(copy: Copy, msg: MessageContext) {
    const { opens, clicks } = msg.controls.track;
    if (!opens && !clicks) return NEXT;
    const s = msg.settings;
    const claim = { account: s.accountId, queueId: copy.queueId, recipient: copy.recipient };
    // Expiry counts from when the copy is sent (its due time), not from when it was accepted.
    const expiresAt = s.trackingLinkTtlSeconds === null ? 0 : Math.floor(msg.due / 1000) + s.trackingLinkTtlSeconds;
    const own = `${s.publicUrl}/u/`;
    let lookup: ((name: string) => string | undefined) | undefined;
    const link = (template: string): string => {
      const url = template.includes('{{') ? mergeText(template, (lookup ??= copyLookup(copy, msg)), (v) => encodeUrlValue(v, false)) : template;
      return !clicks || url.startsWith(own) || !/^https?:\/\//i.test(url) ? url : `${s.publicUrl}/t/c/${signClickToken(s.keys, { ...claim, url }, expiresAt)}`;
    };
    const first = msg.firstBodyPart('text/html');
    for (const part of msg.bodyParts) {
      if (part.type === 'text/plain') {
        if (clicks && s.account.track.textLinks) {
          const text = await copy.text(msg, part);
          const spans = await findTextUrlsSliced(text);
          const links = await linkAll(spans.map(([a, b]) => text.slice(a, b)), link);
          const next = replaceSpans(text, spans, (url) => links.get(url)!);
          if (next !== text) copy.texts.set(part.index, next);
        }
        continue;
      }
      if (part.type !== 'text/html') continue;
      const pixel = opens && part === first;
      if (!clicks && !pixel) continue;
      const t = await template(msg, await copy.text(msg, part), clicks, pixel);
      const img = pixel ? `<img src="${s.publicUrl}/t/o/${signOpenToken(s.keys, claim, expiresAt)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">` : '';
      const links = await linkAll(t.slots.flatMap((slot) => (slot.kind === 'link' ? [slot.url] : [])), link);
      copy.texts.set(part.index, fillHtml(t, (url) => links.get(url)!, img));
      noteUrlTagsMarked(copy, part.index);
    }
    return NEXT;
  },
};

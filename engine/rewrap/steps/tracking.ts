/*
 * tracking.ts (copy step) — open and click tracking, per X-Postino-Track or
 * the account default (accounts[].engine.track). Clicks: every http(s) link
 * (<a>, <area>) of every HTML body part points to `<publicUrl>/t/c/<token>`,
 * the token signed and carrying the original URL (common/tokens.ts); mailto:,
 * tel:, anchors and our own unsubscribe links are left alone. Opens: a 1×1
 * image `<publicUrl>/t/o/<token>` before </body> of the first HTML part.
 * Plain-text parts are not changed unless `track.textLinks` is on: then their
 * http(s) URLs are rewritten the same way (found by a URL scanner over the
 * text; trailing punctuation is not part of a URL). The HTML is tokenized with parse5
 * (html-rewrite.ts) once per distinct HTML text of a message and the template
 * is filled per copy with that copy's tokens. It runs before merge-fields.ts,
 * so the HTML is the same for every copy (one parse per message); a link whose
 * URL holds merge tags is merged for this copy before it is signed, and a link
 * that is only a merge tag (`href="{{unsubscribe_url}}"`) is not an http(s)
 * link and is left to merge-fields.ts.
 */
import { signClickToken, signOpenToken } from '../../../common/tokens.js';
import { fillHtml, templateHtml, type HtmlTemplate } from '../html-rewrite.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';
import { copyLookup, mergeText } from './merge-fields.js';

/** An http(s) URL in plain text, and the punctuation after it that ends a sentence rather than the URL. */
const TEXT_URL = /(https?:\/\/[^\s<>"]+?)([.,;:!?)\]'"]*(?:\s|$))/gi;

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
    t = templateHtml(html, { links, pixel });
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
      const url = template.includes('{{') ? mergeText(template, (lookup ??= copyLookup(copy, msg)), (v) => v) : template;
      return !clicks || url.startsWith(own) || !/^https?:\/\//i.test(url) ? url : `${s.publicUrl}/t/c/${signClickToken(s.keys, { ...claim, url }, expiresAt)}`;
    };
    const first = msg.firstBodyPart('text/html');
    for (const part of msg.bodyParts) {
      if (part.type === 'text/plain') {
        if (clicks && s.account.track.textLinks) {
          const text = await copy.text(msg, part);
          const next = text.replace(TEXT_URL, (whole, url: string, tail: string) => link(url) + tail);
          if (next !== text) copy.texts.set(part.index, next);
        }
        continue;
      }
      if (part.type !== 'text/html') continue;
      const pixel = opens && part === first;
      if (!clicks && !pixel) continue;
      const t = await template(msg, await copy.text(msg, part), clicks, pixel);
      const img = pixel ? `<img src="${s.publicUrl}/t/o/${signOpenToken(s.keys, claim, expiresAt)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">` : '';
      copy.texts.set(part.index, fillHtml(t, link, img));
    }
    return NEXT;
  },
};

/*
 * tracking.ts (copy step) — open and click tracking, per X-Postino-Track or
 * the account default (accounts[].engine.track). Clicks: every http(s) link
 * (<a>, <area>) of every HTML body part points to `<publicUrl>/t/c/<token>`,
 * the token signed and carrying the original URL (common/tokens.ts); mailto:,
 * tel:, anchors and our own unsubscribe links are left alone. Opens: a 1×1
 * image `<publicUrl>/t/o/<token>` before </body> of the first HTML part.
 * Plain-text parts are not changed. HTML is rewritten token by token with
 * parse5 (html-rewrite.ts).
 */
import { signClickToken, signOpenToken } from '../../common/tokens.js';
import { rewriteHtml } from '../html-rewrite.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../rewrap-context.js';

export const tracking: CopyStep = {
  name: 'tracking',
  async run(copy: Copy, msg: MessageContext) {
    const { opens, clicks } = msg.controls.track;
    if (!opens && !clicks) return NEXT;
    const s = msg.settings;
    const claim = { account: s.accountId, queueId: copy.queueId, recipient: copy.recipient };
    const own = `${s.publicUrl}/u/`;
    const link = clicks ? (url: string) => (url.startsWith(own) ? undefined : `${s.publicUrl}/t/c/${signClickToken(s.signingKey, { ...claim, url })}`) : undefined;
    const first = msg.firstBodyPart('text/html');
    for (const part of msg.bodyParts) {
      if (part.type !== 'text/html') continue;
      const pixel =
        opens && part === first
          ? `<img src="${s.publicUrl}/t/o/${signOpenToken(s.signingKey, claim)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">`
          : undefined;
      if (!link && !pixel) continue;
      copy.texts.set(part.index, await rewriteHtml(await copy.text(msg, part), { link, beforeBodyEnd: pixel }));
    }
    return NEXT;
  },
};

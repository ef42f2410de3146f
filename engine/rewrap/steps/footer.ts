/*
 * footer.ts (copy step) — the account's header and footer templates
 * (accounts[].engine.footer: text, html, headerText, headerHtml), added to the
 * first text/plain and the first text/html body part, whatever the structure
 * (single part, multipart/alternative, multipart/mixed with attachments,
 * multipart/related). On when X-Postino-Footer: on, or by the account default
 * (`footer.enabled`). The part is re-encoded with its own transfer encoding
 * when it is written (render.ts); every other part stays byte-identical.
 * Templates may hold merge tags ({{unsubscribe_url}}…): merge-fields.ts runs after.
 * A message over a MIME limit never gets here: mime-limits.ts rejects it first.
 */
import { rewriteHtml } from '../html-rewrite.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

/** The HTML with header/footer, per message and input text: every copy of a message gets the same (merge fields come later). */
const withFooter = new WeakMap<MessageContext, { input: string; output: Promise<string> }>();

function crlf(text: string): string {
  return text.replace(/\r?\n/g, '\r\n');
}

export const footer: CopyStep = {
  name: 'footer',
  async run(copy: Copy, msg: MessageContext) {
    if (!msg.controls.footer) return NEXT;
    const t = msg.settings.account.footer;
    const plain = msg.firstBodyPart('text/plain');
    if (plain && (t.text || t.headerText)) {
      let text = await copy.text(msg, plain);
      if (t.headerText) text = crlf(t.headerText) + '\r\n' + text;
      if (t.text) text = text + (text === '' || text.endsWith('\n') ? '' : '\r\n') + crlf(t.text) + '\r\n';
      copy.texts.set(plain.index, text);
    }
    const html = msg.firstBodyPart('text/html');
    if (html && (t.html || t.headerHtml)) {
      const input = await copy.text(msg, html);
      let cached = withFooter.get(msg);
      if (!cached || cached.input !== input) {
        cached = { input, output: rewriteHtml(input, { afterBodyStart: t.headerHtml ?? undefined, beforeBodyEnd: t.html ?? undefined }) };
        withFooter.set(msg, cached);
      }
      copy.texts.set(html.index, await cached.output);
    }
    return NEXT;
  },
};

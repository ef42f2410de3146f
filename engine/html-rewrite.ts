/*
 * html-rewrite.ts — the edits the engine makes to an HTML part, in one pass of
 * a real HTML tokenizer: parse5's RewritingStream (the WHATWG tokenizer of
 * parse5, the parser used by jsdom and Angular). Every token we do not change
 * is written back as its raw source text, so the document is byte-identical
 * outside the edits; a changed start tag is re-serialized by parse5 (attribute
 * values escaped), so the HTML stays valid.
 *
 * Edits: `link` rewrites the href of <a> and <area> elements that point to
 * http(s) URLs (mailto:, tel:, #anchors and relative links are left alone);
 * `afterBodyStart` is inserted right after <body> (header template);
 * `beforeBodyEnd` right before </body> (footer, open pixel). Without a body
 * tag, they go after </head> (or at the start) and before </html> (or at the end).
 * Side effects: none.
 */
import { randomBytes } from 'node:crypto';
import { RewritingStream } from 'parse5-html-rewriting-stream';

export interface HtmlEdits {
  /** New URL for an http(s) link, or undefined to leave it. */
  link?: ((url: string) => string | undefined) | undefined;
  afterBodyStart?: string | undefined;
  beforeBodyEnd?: string | undefined;
}

const LINK_ELEMENTS = new Set(['a', 'area']);
const HTTP_URL = /^https?:\/\//i;

export function rewriteHtml(html: string, edits: HtmlEdits): Promise<string> {
  return new Promise((resolve, reject) => {
    const rw = new RewritingStream();
    const out: string[] = [];
    let bodyStarted = false;
    let bodyEnded = false;
    // Output arrives through the stream; the place after </head> is marked and filled in at the end.
    const headMark = `\u0000${randomBytes(8).toString('hex')}\u0000`;
    let headMarked = false;
    rw.on('data', (s: string) => out.push(s));
    rw.on('startTag', (tag, raw) => {
      if (edits.link && LINK_ELEMENTS.has(tag.tagName)) {
        const href = tag.attrs.find((a) => a.name === 'href');
        const url = href?.value.trim();
        const next = url && HTTP_URL.test(url) ? edits.link(url) : undefined;
        if (href && next !== undefined) {
          href.value = next;
          rw.emitStartTag(tag);
          return;
        }
      }
      rw.emitRaw(raw);
      if (tag.tagName === 'body' && !bodyStarted) {
        bodyStarted = true;
        if (edits.afterBodyStart) rw.emitRaw(edits.afterBodyStart);
      }
    });
    rw.on('endTag', (tag, raw) => {
      if (!bodyEnded && (tag.tagName === 'body' || tag.tagName === 'html')) {
        bodyEnded = true;
        if (edits.beforeBodyEnd) rw.emitRaw(edits.beforeBodyEnd);
      }
      rw.emitRaw(raw);
      if (tag.tagName === 'head' && !headMarked && edits.afterBodyStart) {
        headMarked = true;
        rw.emitRaw(headMark);
      }
    });
    rw.on('error', reject);
    rw.on('end', () => {
      let text = out.join('');
      if (headMarked) text = text.replace(headMark, bodyStarted ? '' : edits.afterBodyStart!);
      else if (!bodyStarted && edits.afterBodyStart) text = edits.afterBodyStart + text;
      if (!bodyEnded && edits.beforeBodyEnd) text += edits.beforeBodyEnd;
      resolve(text);
    });
    rw.end(html);
  });
}

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

/** A slot of an HTML template: an http(s) link to fill in, or the place of the open pixel. */
export type HtmlSlot = { kind: 'link'; url: string } | { kind: 'pixel' };

/**
 * The HTML cut at its http(s) links (and at the pixel's place): parsed once
 * per message, then filled per copy with that copy's tokens (`fillHtml`), so
 * 100 recipients of the same newsletter cost one parse, not 100.
 */
export interface HtmlTemplate {
  /** Text between slots; `pieces.length === slots.length + 1`. */
  pieces: string[];
  slots: HtmlSlot[];
}

export async function templateHtml(html: string, opts: { links: boolean; pixel: boolean }): Promise<HtmlTemplate> {
  const mark = `\u0000${randomBytes(8).toString('hex')}:`;
  const slots: HtmlSlot[] = [];
  const slot = (s: HtmlSlot): string => {
    slots.push(s);
    return `${mark}${slots.length - 1}\u0000`;
  };
  const out = await rewriteHtml(html, {
    link: opts.links ? (url) => slot({ kind: 'link', url }) : undefined,
    beforeBodyEnd: opts.pixel ? slot({ kind: 'pixel' }) : undefined,
  });
  const pieces: string[] = [];
  const ordered: HtmlSlot[] = [];
  let pos = 0;
  for (;;) {
    const at = out.indexOf(mark, pos);
    if (at === -1) break;
    const end = out.indexOf('\u0000', at + mark.length);
    pieces.push(out.slice(pos, at));
    ordered.push(slots[Number(out.slice(at + mark.length, end))]!);
    pos = end + 1;
  }
  pieces.push(out.slice(pos));
  return { pieces, slots: ordered };
}

function escapeAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
}

/** Fills a template: `link` gives the new URL of a link (escaped here as an attribute value), `pixel` the pixel's HTML. */
export function fillHtml(t: HtmlTemplate, link: (url: string) => string, pixel: string): string {
  let s = t.pieces[0]!;
  t.slots.forEach((slot, i) => {
    s += (slot.kind === 'link' ? escapeAttr(link(slot.url)) : pixel) + t.pieces[i + 1]!;
  });
  return s;
}

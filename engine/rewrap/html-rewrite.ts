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
 * `markUrlTags` marks the merge tags inside URL attributes (href, src…) so
 * merge-fields.ts percent-encodes their values there.
 * The tokenizer is fed 64 Ki characters at a time and paused between two
 * tokens once it has worked PARSE_SLICE_MS, with a turn of the event loop
 * before it goes on, so a 2 MB part never holds the thread for long.
 * Side effects: none.
 */
import { randomBytes } from 'node:crypto';
import { RewritingStream } from 'parse5-html-rewriting-stream';
import { nextTurn } from '../../common/next-turn.js';

export interface HtmlEdits {
  /** New value for an attribute of any start tag, or undefined to leave it (runs before `link`). */
  attribute?: ((name: string, value: string) => string | undefined) | undefined;
  /** New URL for an http(s) link, or undefined to leave it. */
  link?: ((url: string) => string | undefined) | undefined;
  afterBodyStart?: string | undefined;
  beforeBodyEnd?: string | undefined;
}

const LINK_ELEMENTS = new Set(['a', 'area']);
/** Attributes whose value is an URL (HTML Living Standard attribute index), on any element. */
const URL_ATTRIBUTES = new Set(['href', 'src', 'action', 'formaction', 'background', 'cite', 'poster', 'longdesc', 'usemap']);
/**
 * parse5 tokenizes what it is given at once, so the work of one write is bounded from inside: the
 * token handlers pause the tokenizer once a slice has run PARSE_SLICE_MS, and the feed resumes it
 * after a turn of the event loop. Time, not characters, is the measure: 64 Ki characters of plain
 * text take a few ms, but 64 Ki of dense markup (a link every 40 characters, each start tag handed
 * to our edits and re-serialized) took 30-60 ms, several times that on a loaded machine, and an
 * SMTP client waits through one such turn per command (test/e2e/responsive-hostile-content.test.ts).
 * Smaller chunks are no answer: parse5 carries a token that spans chunks (one 2 MB text run) from
 * chunk to chunk, so 4 Ki chunks made that case super-linear (2 MB: 6 s instead of 0.9 s, measured
 * on a loaded machine); a pause between tokens splits nothing.
 */
const PARSE_CHUNK = 64 * 1024;
const PARSE_SLICE_MS = 5;
/** A power of two. */
const TOKENS_PER_CLOCK = 16;
const HTTP_URL = /^https?:\/\//i;

export function rewriteHtml(html: string, edits: HtmlEdits): Promise<string> {
  return new Promise((resolve, reject) => {
    const rw = new SlicedRewritingStream();
    const out: string[] = [];
    let bodyStarted = false;
    let bodyEnded = false;
    // Output arrives through the stream; the place after </head> is marked and filled in at the end.
    const headMark = `\u0000${randomBytes(8).toString('hex')}\u0000`;
    let headMarked = false;
    rw.on('data', (s: string) => out.push(s));
    rw.on('startTag', (tag, raw) => {
      rw.slice();
      let changed = false;
      if (edits.attribute) {
        for (const a of tag.attrs) {
          const v = edits.attribute(a.name, a.value);
          if (v !== undefined) {
            a.value = v;
            changed = true;
          }
        }
      }
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
      if (changed) rw.emitStartTag(tag);
      else rw.emitRaw(raw);
      if (tag.tagName === 'body' && !bodyStarted) {
        bodyStarted = true;
        if (edits.afterBodyStart) rw.emitRaw(edits.afterBodyStart);
      }
    });
    rw.on('endTag', (tag, raw) => {
      rw.slice();
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
    // Dense markup need not be tags (text counts in onCharacter): these are written back as they came, as without a listener.
    for (const kind of ['comment', 'doctype'] as const) {
      rw.on(kind, (_token, raw: string) => {
        rw.slice();
        rw.emitRaw(raw);
      });
    }
    rw.on('error', reject);
    rw.on('end', () => {
      let text = out.join('');
      if (headMarked) text = text.replace(headMark, () => (bodyStarted ? '' : edits.afterBodyStart!));
      else if (!bodyStarted && edits.afterBodyStart) text = edits.afterBodyStart + text;
      if (!bodyEnded && edits.beforeBodyEnd) text += edits.beforeBodyEnd;
      resolve(text);
    });
    void feed(rw, html).catch(reject);
  });
}

/**
 * A RewritingStream whose token handlers call `slice()`: past PARSE_SLICE_MS since the slice began
 * it pauses the tokenizer between two tokens (what SAXParser.stop does, but resumable), and
 * `feed` resumes it after a turn of the event loop.
 */
class SlicedRewritingStream extends RewritingStream {
  constructor() {
    super();
    // SAXParser pipes itself into a sink so that it flows without a reader; rewriteHtml reads every
    // chunk ('data'), and the sink converted each string it was given to a Buffer to drop it (8% of a parse).
    this.unpipe();
    this.resume(); // unpipe() left the stream paused, and a 'data' listener added later would not start it
    const sax = this as unknown as Partial<SaxInternals>;
    this.inPlace = sax.pendingText === null && typeof sax._emitPendingText === 'function';
  }

  /** SAXParser has the internals onCharacter reaches (a later version may not: then it is left to the library). */
  private readonly inPlace: boolean;

  /** While true, `slice()` never pauses: the end of input must be tokenized in the call that ends it. */
  ending = false;
  /** The tokenizer was paused by `slice()` (not the stream's own pause: a Readable has one). */
  held = false;
  private sliceStart = 0;
  private tokens = 0;

  startSlice(): void {
    this.sliceStart = performance.now();
  }

  /** Called per token; the clock is read every TOKENS_PER_CLOCK tokens (a token of text costs ~1 µs, the clock ~50 ns). */
  slice(): void {
    if ((++this.tokens & (TOKENS_PER_CLOCK - 1)) !== 0) return;
    if (!this.ending && !this.held && performance.now() - this.sliceStart > PARSE_SLICE_MS) {
      this.held = true;
      this.tokenizer.pause();
    }
  }

  /**
   * Text is a run of character tokens (one per run of spaces or of other characters) with no
   * handler of ours between, so they count toward the slice here. And the run's location is
   * extended in place: SAXParser.onCharacter spreads the pending text's location into a new
   * object per token, 37% of a parse of a 100 KB newsletter (CPU profile). The run gets its own
   * copy of its first token's location (the tokenizer's object is not ours to change) and later
   * tokens set its end; everything else is the library's (parse5-sax-parser 8.0.0, whose private
   * `pendingText` and `_emitPendingText` this reaches: SaxInternals). With the sink unpiped as well,
   * a footer and a tracking parse of a 100 KB newsletter took 16-28 ms against 42-86 (this VM).
   */
  override onCharacter(token: CharacterToken): void {
    const sax = this as unknown as SaxInternals;
    const pending = sax.pendingText;
    const loc = pending?.sourceCodeLocation;
    if (this.inPlace && pending && loc && token.location) {
      pending.text += token.chars;
      loc.endLine = token.location.endLine;
      loc.endCol = token.location.endCol;
      loc.endOffset = token.location.endOffset;
      if (this.tokenizer.preprocessor.willDropParsedChunk()) sax._emitPendingText();
    } else {
      super.onCharacter(token);
      const started = sax.pendingText;
      if (this.inPlace && started && started !== pending && started.sourceCodeLocation) started.sourceCodeLocation = { ...started.sourceCodeLocation };
    }
    this.slice();
  }

  /** Tokenizes on from the pause until the next one or the end of what was written. */
  tokenizeOn(): void {
    this.held = false;
    this.startSlice();
    this.tokenizer.resume();
  }
}

type CharacterToken = Parameters<RewritingStream['onCharacter']>[0];
type TokenLocation = NonNullable<CharacterToken['location']>;

/** What SAXParser keeps private and SlicedRewritingStream.onCharacter reaches (parse5-sax-parser 8.0.0). */
interface SaxInternals {
  pendingText: { text: string; sourceCodeLocation?: TokenLocation | null } | null;
  _emitPendingText(): void;
}

/** Writes the text in chunks, waiting for the stream to take each and letting the event loop turn between slices. */
async function feed(rw: SlicedRewritingStream, html: string): Promise<void> {
  for (let at = 0; at < html.length; at += PARSE_CHUNK) {
    rw.startSlice();
    const more = rw.write(html.slice(at, at + PARSE_CHUNK));
    while (rw.held) {
      await nextTurn();
      rw.tokenizeOn();
    }
    if (!more) await new Promise((r) => rw.once('drain', r));
    await nextTurn();
  }
  rw.ending = true;
  rw.end();
}

/** Marks before a merge tag inside an URL attribute value: `START` when the tag begins the value (it is the whole URL). */
const MARK_ID = randomBytes(6).toString('hex');
export const URL_TAG_MARK = `\u0000${MARK_ID}u`;
export const URL_START_MARK = `\u0000${MARK_ID}s`;

/** The HTML with every `{{` inside an URL attribute value preceded by URL_TAG_MARK (URL_START_MARK at the start of the value). */
export function markUrlTags(html: string): Promise<string> {
  return rewriteHtml(html, { attribute: markUrlAttribute });
}

/** The `attribute` edit of markUrlTags (templateHtml makes it in the same pass). */
function markUrlAttribute(name: string, value: string): string | undefined {
  if (!URL_ATTRIBUTES.has(name) || !value.includes('{{')) return undefined;
  const lead = value.length - value.trimStart().length;
  const body = value.slice(lead).split('{{').join(`${URL_TAG_MARK}{{`);
  return value.slice(0, lead) + (body.startsWith(URL_TAG_MARK) ? URL_START_MARK + body.slice(URL_TAG_MARK.length) : body);
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

/** `markTags`: the merge tags of URL attributes are marked as markUrlTags does, in the same parse (link slots' URLs included). */
export async function templateHtml(html: string, opts: { links: boolean; pixel: boolean; markTags?: boolean }): Promise<HtmlTemplate> {
  const mark = `\u0000${randomBytes(8).toString('hex')}:`;
  const slots: HtmlSlot[] = [];
  const slot = (s: HtmlSlot): string => {
    slots.push(s);
    return `${mark}${slots.length - 1}\u0000`;
  };
  const out = await rewriteHtml(html, {
    attribute: opts.markTags ? markUrlAttribute : undefined,
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

/*
 * mail-view.ts — one message shown as a mail client would, for the captured
 * copies (captured.ts) and the archived sources (archived.ts): parsed with
 * bounded effort, its HTML part in a sandboxed iframe whose route answers
 * under BODY_CSP (page.ts: no script, no request of any kind), its text part,
 * its headers.
 *
 * Side effects: none (parsing in memory).
 */
import type { FastifyReply } from 'fastify';
import { simpleParser, type ParsedMail } from 'mailparser';
import { html, type Html } from './html.js';
import { BODY_CSP } from './page.js';

/** mailparser limits for showing a message (it is anyone's mail, so bounded like a report). */
const MAX_MIME_PARTS = 256;
const MAX_HTML_CHARS = 2 * 1024 * 1024;
/** Header lines listed; a message with more is a curiosity, not something to read in full here. */
const MAX_HEADER_ROWS = 100;

export function parseMail(raw: Buffer): Promise<ParsedMail> {
  return simpleParser(raw, { skipTextToHtml: true, skipTextLinks: true, skipImageLinks: false, checksumAlgo: false, maxHtmlLengthToParse: MAX_HTML_CHARS, maxChildNodes: MAX_MIME_PARTS });
}

/**
 * The HTML part (iframe from `htmlSrc`, of class `frameClass`: a page showing two messages
 * tells their frames apart by it), the text part and the headers of a parsed message.
 */
export function mailParts(parsed: ParsedMail, htmlSrc: string, what: string, frameClass = 'mail', headersOpen = false): Html {
  const headerRows = [...parsed.headerLines].slice(0, MAX_HEADER_ROWS).map((h) => html`<tr><th>${h.key}</th><td>${h.line.slice(h.line.indexOf(':') + 1).trim()}</td></tr>`);
  return html`${parsed.html !== false
    ? html`<h3>HTML</h3><iframe class="${frameClass}" sandbox src="${htmlSrc}" title="${`HTML body of the ${what}`}" referrerpolicy="no-referrer"></iframe>`
    : html`<p class="hint">No HTML part.</p>`}
<h3>Text</h3>
${parsed.text ? html`<pre class="text-part">${parsed.text}</pre>` : html`<p class="hint">No text part.</p>`}
<details${headersOpen ? html` open` : ''}><summary>All headers</summary><div class="scroll"><table class="headers">${headerRows}</table></div></details>`;
}

/** The iframe's document: the HTML part (or the text part as a <pre>) under BODY_CSP. */
export function sendMailBody(reply: FastifyReply, parsed: ParsedMail): FastifyReply {
  // The sandbox attribute on the iframe and the CSP sandbox directive both forbid scripts.
  const body = parsed.html === false ? html`<pre>${parsed.text ?? ''}</pre>`.value : parsed.html;
  return reply.header('content-security-policy', BODY_CSP).type('text/html; charset=utf-8').send(body);
}

/** The .eml download. */
export function sendEml(reply: FastifyReply, raw: Buffer, name: string): FastifyReply {
  return reply.type('message/rfc822').header('content-disposition', `attachment; filename="${name}.eml"`).send(raw);
}

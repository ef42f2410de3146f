/*
 * A hostile message corpus for the rewrap (issue #11), generated from a seed
 * so a failing case can be replayed: each generator returns a whole message
 * of about `size` bytes (CRLF line ends) built to hit one scan that used to be
 * super-linear (merge tags, text URLs, padding after `--`, boundaries, MIME
 * depth and width, long header lines).
 */
import { seededRandom } from './random.js';

const HEAD = 'From: Shop <shop@example.org>\r\nTo: ada@example.com\r\nSubject: Hello {{first|friend}}\r\nX-Postino-Vars: {"first":"Ada"}\r\nMessage-ID: <hostile@example.org>\r\nMIME-Version: 1.0\r\n';

function alternative(text: string, html: string): string {
  return `${HEAD}Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>${html}</body></html>\r\n--b1--\r\n`;
}

/** Lines of `size / 2` characters drawn from `pieces` (picked by the seeded generator), CRLF every ~60 characters. */
function fill(size: number, seed: number, pieces: readonly string[]): string {
  const rnd = seededRandom(seed);
  const out: string[] = [];
  let n = 0;
  let line = 0;
  while (n < size) {
    const p = pieces[Math.floor(rnd() * pieces.length)]!;
    out.push(p);
    n += p.length;
    line += p.length;
    if (line > 60) {
      out.push('\r\n');
      n += 2;
      line = 0;
    }
  }
  return out.join('');
}

export type Generator = (size: number, seed: number) => string;

/** `{{` without `}}`, `{{{{`, unterminated tags with long defaults, and a few real tags. */
export const mergeTagFlood: Generator = (size, seed) => {
  const pieces = ['{{', '{{{{', '{{ first', '{{first|', 'x'.repeat(40), ' {{first}} ', '}}', '{', '{{a|' + 'd'.repeat(300)];
  return alternative(fill(size / 2, seed, pieces), fill(size / 2, seed + 1, pieces));
};

/** One part that is only `{{`: the 1.3 MB case of the issue, as one line. */
export const mergeTagLine: Generator = (size) => alternative('{{'.repeat(size / 4), '{{'.repeat(size / 4));

/** Text URLs that never end well: long runs after http://, trailing punctuation runs, `http` without a scheme. */
export const urlFlood: Generator = (size, seed) => {
  const pieces = ['http://', 'https://a.', 'http', '.'.repeat(30), 'y'.repeat(50), ')', ' ', 'https://x.test/?u={{first}}'];
  return alternative(fill(size / 2, seed, pieces), '<p>' + fill(size / 2, seed + 1, ['<a href="http://x.test/', '{{first}}">', 'link</a> ', 'text ']) + '</p>');
};

/** Lines that start with a dot (`.`, `..`, `.x`…), each stuffed again on every hop out (RFC 5321 4.5.2). */
export const dotLines: Generator = (size, seed) => {
  const rnd = seededRandom(seed);
  const lines: string[] = [];
  for (let n = 0; n < size; ) {
    const l = '.'.repeat(1 + Math.floor(rnd() * 3)) + (rnd() < 0.5 ? '' : 'x'.repeat(Math.floor(rnd() * 8)));
    lines.push(l);
    n += l.length + 2;
  }
  return alternative(lines.join('\r\n'), '<p>' + lines.join('\r\n') + '</p>');
};

/** Lines of `--` followed by long runs of spaces and tabs (the trailing-padding pattern), inside a multipart. */
export const whitespaceFlood: Generator = (size, seed) => {
  const rnd = seededRandom(seed);
  const lines: string[] = [];
  for (let n = 0; n < size; ) {
    const l = '--' + (rnd() < 0.5 ? ' ' : '\t').repeat(200 + Math.floor(rnd() * 800)) + (rnd() < 0.5 ? 'x' : '');
    lines.push(l);
    n += l.length + 2;
  }
  return `${HEAD}Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n${lines.join('\r\n')}\r\n--b1--\r\n`;
};

/** `--` lines that look like delimiters of many open multiparts but are not (nested 50 deep, so the stack is tall). */
export const boundaryFlood: Generator = (size, seed) => {
  const rnd = seededRandom(seed);
  const depth = 50;
  let head = '';
  for (let d = 0; d < depth; d++) head += `--b${d}\r\nContent-Type: multipart/mixed; boundary="b${d + 1}"\r\n\r\n`;
  const lines: string[] = [];
  for (let n = 0; n < size; ) {
    const d = Math.floor(rnd() * depth);
    const l = rnd() < 0.3 ? `--b${d}x` : rnd() < 0.5 ? `--b${d}---` : `--${'b'.repeat(Math.floor(rnd() * 60))}`;
    lines.push(l);
    n += l.length + 2;
  }
  return `${HEAD}Content-Type: multipart/mixed; boundary="b0"\r\n\r\n${head}--b${depth}\r\nContent-Type: text/plain\r\n\r\n${lines.join('\r\n')}\r\n--b${depth}--\r\n`;
};

/** `count` multipart/mixed parts, each inside the one before. */
export function deepMime(count: number): string {
  let s = `${HEAD}Content-Type: multipart/mixed; boundary="d0"\r\n\r\n`;
  const parts: string[] = [s];
  for (let d = 0; d < count; d++) parts.push(`--d${d}\r\nContent-Type: multipart/mixed; boundary="d${d + 1}"\r\n\r\n`);
  parts.push(`--d${count}\r\nContent-Type: text/plain\r\n\r\nhello\r\n`);
  for (let d = count; d >= 0; d--) parts.push(`--d${d}--\r\n`);
  s = parts.join('');
  return s;
}

/** One multipart/mixed with `count` small text parts side by side. */
export function wideMime(count: number): string {
  const parts: string[] = [`${HEAD}Content-Type: multipart/mixed; boundary="w"\r\n\r\n`];
  for (let i = 0; i < count; i++) parts.push(`--w\r\nContent-Type: text/plain\r\n\r\n${i}\r\n`);
  parts.push('--w--\r\n');
  return parts.join('');
}

/** Base64 parts whose header block holds one line of `lineSize` bytes. */
export function longHeaderLines(lineSize: number, parts = 2): string {
  const out: string[] = [`${HEAD}Content-Type: multipart/mixed; boundary="h"\r\n\r\n--h\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello {{first}}\r\n`];
  for (let i = 0; i < parts; i++) {
    out.push(`--h\r\nContent-Type: application/octet-stream; name="a${i}.bin"\r\nX-Long: ${'a'.repeat(lineSize)}\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from('attachment ' + i).toString('base64')}\r\n`);
  }
  out.push('--h--\r\n');
  return out.join('');
}

/** `depth` nested multiparts, then `size` bytes of `--` lines inside the innermost (each line used to be checked against the whole stack). */
export function deepBoundaryFlood(depth: number, size: number, seed: number): string {
  const rnd = seededRandom(seed);
  const lines: string[] = [];
  for (let n = 0; n < size; ) {
    const l = `--d${Math.floor(rnd() * depth)}x`;
    lines.push(l);
    n += l.length + 2;
  }
  const head = deepMime(depth);
  const at = head.indexOf('\r\nhello\r\n') + 2;
  return head.slice(0, at) + lines.join('\r\n') + head.slice(at + 5);
}

/**
 * A Subject and a From display name of merge tags, `{{`, encoded-words and
 * their fragments. Non-ASCII only as encoded-words: a raw 8-bit Subject is
 * re-encoded by header-hygiene.ts, whose cost on a megabyte Subject is its own.
 */
export const headerTagFlood: Generator = (size, seed) => {
  const pieces = ['{{first}}', '{{', '=?utf-8?q?=C3=A9?= ', '=?', 'x'.repeat(20), ' '];
  const subject = fill(size / 2, seed, pieces).replace(/\r\n/g, ' ');
  const name = fill(size / 4, seed + 1, pieces).replace(/\r\n/g, ' ');
  return `From: "${name}" <shop@example.org>\r\nTo: ada@example.com\r\nSubject: ${subject}\r\nX-Postino-Vars: {"first":"Ada\\r\\nBcc: evil@example.net"}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello {{first}}\r\n`;
};

/** One run of `http://a.` without white space, ending in `<`: the former text URL pattern tried every `http` in it to the end of the run. */
export const urlRun: Generator = (size) => {
  const run = 'http://a.'.repeat(Math.floor(size / 2 / 9)) + '<';
  return alternative(run, '<p>x</p>');
};

/** `lines` header fields (10,000 in the issue), some folded over several lines, before an ordinary body. */
export function headerFlood(lines: number, seed: number): string {
  const rnd = seededRandom(seed);
  const out: string[] = [];
  for (let i = 0; i < lines; ) {
    const folded = rnd() < 0.2;
    out.push(`X-Flood-${i}: ${'v'.repeat(Math.floor(rnd() * 60))}${folded ? `\r\n\t${'w'.repeat(40)}\r\n ${'z'.repeat(20)}` : ''}`);
    i += folded ? 3 : 1;
  }
  return `${HEAD}${out.join('\r\n')}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello {{first}}\r\n`;
}

/** A raw 8-bit (UTF-8, not encoded) Subject of about `size` bytes, folded into lines of ~900: header-hygiene re-encodes it for every copy. */
export function rawSubject(size: number, seed: number): string {
  const rnd = seededRandom(seed);
  const pieces = ['é', 'ß', '€', '日本', '😀', ' ', 'a', '{{first}}'];
  const lines: string[] = [];
  for (let n = 0; n < size; ) {
    let l = '';
    while (Buffer.byteLength(l) < 900) l += pieces[Math.floor(rnd() * pieces.length)]!;
    lines.push(l);
    n += Buffer.byteLength(l) + 3;
  }
  return HEAD.replace(/^Subject: .*\r\n/m, `Subject: ${lines.join('\r\n ')}\r\n`) + 'Content-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n';
}

/**
 * The message as a strict SMTP server takes it: every line over 900 octets is
 * cut, header lines by folding (CRLF + space), body lines by a line break, so
 * the listener's 998-octet rule (550 5.6.0) lets the hostile content through to
 * the engine. Cuts fall between characters, never inside a UTF-8 sequence.
 */
export function smtpSafe(message: string): string {
  const end = message.indexOf('\r\n\r\n');
  const cut = (text: string, sep: string): string =>
    text
      .split('\r\n')
      .map((line) => {
        if (line.length <= 900) return line;
        const parts: string[] = [];
        for (let i = 0; i < line.length; i += 900) parts.push(line.slice(i, i + 900));
        return parts.join(sep);
      })
      .join('\r\n');
  return `${cut(message.slice(0, end), '\r\n ')}\r\n\r\n${cut(message.slice(end + 4), '\r\n')}`;
}

/** The longest time between two 1 ms ticks while `work` runs. */
export async function maxGap(work: () => Promise<unknown>): Promise<number> {
  let last = performance.now();
  let gap = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    gap = Math.max(gap, now - last);
    last = now;
  }, 1);
  try {
    await work();
  } finally {
    clearInterval(tick);
  }
  return Math.max(gap, performance.now() - last);
}

/*
 * Hostile content through the real rewrap pipeline (issue #11): a seeded
 * corpus at growing sizes shows every scan is linear, MIME over the limits is
 * a typed rejection (never a throw), merge values cannot inject header lines
 * or markup, rewritten lines stay within 998 octets, and the event loop keeps
 * turning while the worst of it is rewrapped.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { verifyClickToken } from '../../../common/tokens.js';
import { scanMime, walkParts } from '../../../engine/rewrap/mime-scan.js';
import { bufferSource } from '../../../engine/rewrap/body-source.js';
import { MAX_MERGED_HEADER } from '../../../engine/rewrap/steps/merge-fields.js';
import { boundaryFlood, deepBoundaryFlood, deepMime, headerTagFlood, longHeaderLines, mergeTagFlood, mergeTagLine, urlFlood, urlRun, whitespaceFlood, wideMime, maxGap, type Generator } from '../../helpers/hostile.js';
import { rewrapEnv, runRewrap, type Env } from '../../helpers/rewrap.js';

const KB = 1024;
const SIZES = [256 * KB, 512 * KB, 1024 * KB, 2048 * KB];
const RUNS = 5;
/** Tracking, text links and footer on: every step that reads or rewrites a body part runs. */
const ALL_ON = { track: { opens: true, clicks: true, textLinks: true }, footer: { enabled: true, text: 'Bye {{email}}', html: '<p>Bye {{email}}</p>' } };
/** Times under this are noise on a shared machine: a ratio is taken against at least this. */
const NOISE_MS = 60;

async function timed(env: Env, raw: Buffer): Promise<{ ms: number; kind: string }> {
  const t0 = performance.now();
  const r = await runRewrap(env, raw, ['ada@example.com']);
  return { ms: performance.now() - t0, kind: r.result.kind };
}

/**
 * The fastest of RUNS: the work is deterministic, so the minimum is its cost and
 * everything above it is the machine's noise (other processes on 2 cores, GC).
 */
async function fastest(env: Env, raw: Buffer): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await timed(env, raw);
    assert.equal(r.kind, 'done', 'the copy is delivered');
    times.push(r.ms);
  }
  return Math.min(...times);
}

const linear: Array<[string, Generator, number]> = [
  // name, generator, absolute bound for the 2 MB message (ms)
  ['merge-tag flood ({{ without }}, {{{{, unterminated)', mergeTagFlood, 1000],
  ['one line of {{', mergeTagLine, 1000],
  ['text URLs that never end, tracked', urlFlood, 3000],
  ['one run of http://a. without white space, tracked', urlRun, 1000],
  ['Subject and From display name full of tags, {{ and non-ASCII', headerTagFlood, 1000],
  ['-- lines with long runs of spaces and tabs', whitespaceFlood, 1000],
  ['-- lines that are almost delimiters of 50 open multiparts', boundaryFlood, 1000],
];

for (const [name, gen, bound] of linear) {
  test(`linear: ${name}, 256 KB → 2 MB`, async () => {
    const env = await rewrapEnv(ALL_ON);
    try {
      await timed(env, Buffer.from(gen(64 * KB, 1))); // warm the JIT
      const ms: number[] = [];
      for (const size of SIZES) ms.push(await fastest(env, Buffer.from(gen(size, 7))));
      const report = SIZES.map((s, i) => `${s / KB} KB ${ms[i]!.toFixed(0)} ms`).join(', ');
      // Over two doublings (4× the size), so one noisy point cannot decide: linear is 4×, quadratic 16×; under 9× is under 3× per doubling.
      for (let i = 2; i < SIZES.length; i++) assert.ok(ms[i]! / Math.max(ms[i - 2]!, NOISE_MS) < 9, `4× the size, under 9× the time (3× per doubling): ${report}`);
      assert.ok(ms[SIZES.length - 1]! < bound, `2 MB in under ${bound} ms: ${report}`);
    } finally {
      await env.close();
    }
  });
}

test('deep MIME: 20,000 nested multiparts are a rejection that names engine.mimeNestingLimit, not a RangeError', async () => {
  const env = await rewrapEnv();
  try {
    const raw = Buffer.from(deepMime(20_000));
    const r = await runRewrap(env, raw, ['ada@example.com']);
    assert.equal(r.result.kind, 'rejected');
    assert.match(r.result.kind === 'rejected' ? r.result.reason : '', /nesting deeper than 100 levels \(engine\.mimeNestingLimit\)/);
    assert.equal(r.copies.length, 0);
    // The scan and the walk alone do not throw either, and keep at most the limit's depth.
    const root = await scanMime(bufferSource(raw).stream(0, raw.length));
    assert.ok(walkParts(root).length <= 102);
  } finally {
    await env.close();
  }
});

test('10,000 nested multiparts then 1 MB of -- lines (28 s before the limits) are rejected within a second', async () => {
  const env = await rewrapEnv();
  try {
    const t0 = performance.now();
    const r = await runRewrap(env, Buffer.from(deepBoundaryFlood(10_000, 1024 * KB, 7)), ['ada@example.com']);
    assert.equal(r.result.kind, 'rejected');
    assert.ok(performance.now() - t0 < 1000, `${(performance.now() - t0).toFixed(0)} ms`);
  } finally {
    await env.close();
  }
});

test('MIME nesting at the limit is delivered; one level more is rejected', async () => {
  const env = await rewrapEnv();
  try {
    assert.equal((await runRewrap(env, Buffer.from(deepMime(99)), ['ada@example.com'])).result.kind, 'done', '100 multipart levels');
    assert.equal((await runRewrap(env, Buffer.from(deepMime(100)), ['ada@example.com'])).result.kind, 'rejected', '101 levels');
  } finally {
    await env.close();
  }
});

test('wide MIME: 50,000 parts are a rejection that names engine.mimeMaxParts; 5,000 are delivered', async () => {
  const env = await rewrapEnv();
  try {
    const r = await runRewrap(env, Buffer.from(wideMime(50_000)), ['ada@example.com']);
    assert.equal(r.result.kind, 'rejected');
    assert.match(r.result.kind === 'rejected' ? r.result.reason : '', /more than 10000 MIME parts \(engine\.mimeMaxParts\)/);
    const raw = Buffer.from(wideMime(5_000));
    const ok = await runRewrap(env, raw, ['ada@example.com']);
    assert.equal(ok.result.kind, 'done');
    const body = (b: Buffer): Buffer => b.subarray(b.indexOf('\r\n\r\n') + 4);
    assert.ok(body(ok.copies[0]!.bytes).equals(body(raw)), 'every part delivered byte-identical');
  } finally {
    await env.close();
  }
});

test('limits come from config: scanMime with a nesting limit of 3 stops a 5-deep message', async () => {
  const raw = Buffer.from(deepMime(5));
  const root = await scanMime(bufferSource(raw).stream(0, raw.length), { nesting: 3, parts: 10_000 });
  assert.match(root.limit ?? '', /deeper than 3 levels/);
});

test('1 MB header lines in base64 parts: the attachments are delivered byte-identical, the text merged', async () => {
  const env = await rewrapEnv(ALL_ON);
  try {
    const raw = Buffer.from(longHeaderLines(1024 * KB));
    const r = await runRewrap(env, raw, ['ada@example.com']);
    assert.equal(r.result.kind, 'done');
    const out = r.copies[0]!.bytes;
    for (const i of [0, 1]) {
      const att = `Content-Type: application/octet-stream; name="a${i}.bin"\r\nX-Long: ${'a'.repeat(1024 * KB)}\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from('attachment ' + i).toString('base64')}\r\n`;
      assert.ok(out.includes(att), `attachment ${i} byte-identical`);
    }
    assert.ok(out.includes('Hello Ada'));
  } finally {
    await env.close();
  }
});

const INJECT = 'Ada\r\nBcc: evil@example.net\r\n\r\n<script>x</script>';
const injectMsg = (varsHeader: string, smtpapi: string): string =>
  [
    'From: "{{name}}" <shop@example.org>',
    'To: ada@example.com',
    'Subject: Hi {{name}} from -city-',
    `${varsHeader}: ${JSON.stringify({ name: INJECT, link: 'javascript:alert(1)\r\nX: y', unsub: 'https://shop.example/u?a=1' })}`,
    `X-SMTPAPI: ${smtpapi}`,
    'Message-ID: <inject@example.org>',
    'MIME-Version: 1.0',
    'Content-Type: multipart/alternative; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Hello {{name}} from -city-',
    '--b',
    'Content-Type: text/html; charset=utf-8',
    '',
    '<p>Hello {{name}}</p><a href="https://shop.example/p?n={{name}}">p</a><a href="{{link}}">l</a><a href="{{unsub}}">u</a>',
    '--b--',
    '',
  ].join('\r\n');

for (const [track, varsHeader] of [[false, 'X-Postino-Vars'], [true, 'X-Postino-Vars'], [false, 'X-Mailgun-Variables']] as const) {
  test(`CR/LF and markup in merge values (${varsHeader}, X-SMTPAPI sub) stay in their context${track ? ', clicks tracked' : ''}`, async () => {
    const env = await rewrapEnv(track ? { track: { clicks: true } } : {});
    try {
      const r = await runRewrap(env, injectMsg(varsHeader, JSON.stringify({ sub: { '-city-': ['Paris\r\nX-Evil: 1'] } })), ['ada@example.com']);
      assert.equal(r.result.kind, 'done');
      const copy = r.copies[0]!;
      const lines = copy.headers.split('\r\n');
      assert.ok(!lines.some((l) => /^(bcc|x-evil|x):/i.test(l)), `no injected header line:\n${copy.headers}`);
      assert.ok(!/(^|[^\r])\n/.test(copy.text), 'no bare LF anywhere in the copy');
      assert.ok(!copy.text.includes('\u0000'), 'no URL-tag mark left');
      const p = await simpleParser(copy.bytes);
      assert.equal(p.subject, 'Hi Ada Bcc: evil@example.net <script>x</script> from Paris X-Evil: 1');
      assert.equal(p.from?.value[0]?.name, 'Ada Bcc: evil@example.net <script>x</script>');
      assert.equal(p.from?.value[0]?.address, 'shop@example.org');
      assert.equal(p.bcc, undefined);
      assert.equal(p.text?.trim(), `Hello ${INJECT.replace(/\r\n/g, '\n')} from Paris\nX-Evil: 1`, 'text as is (line ends CRLF on the wire)');
      const html = String(p.html);
      assert.ok(!html.includes('<script>'), html);
      assert.ok(html.includes('<p>Hello Ada\r\nBcc: evil@example.net\r\n\r\n&lt;script&gt;x&lt;/script&gt;</p>') || html.includes('<p>Hello Ada\nBcc: evil@example.net\n\n&lt;script&gt;x&lt;/script&gt;</p>'), html);
      const hrefs = [...html.matchAll(/href="([^"]*)"/g)].map((m) => m[1]!);
      assert.equal(hrefs.length, 3, html);
      const merged = `https://shop.example/p?n=${encodeURIComponent(INJECT)}`;
      if (track) assert.equal(verifyClickToken(env.settings.keys, hrefs[0]!.slice('https://mail.example.net/t/c/'.length))?.url, merged, 'the signed URL holds the encoded value');
      else assert.equal(hrefs[0], merged);
      assert.equal(hrefs[1], encodeURIComponent('javascript:alert(1)\r\nX: y'), 'not a link any more');
      assert.equal(hrefs[2], 'https://shop.example/u?a=1', 'a whole-URL value that is an http(s) URL is kept');
    } finally {
      await env.close();
    }
  });
}

test('a Subject under MAX_MERGED_HEADER is merged; one over it is delivered as it came', async () => {
  const env = await rewrapEnv();
  try {
    for (const [n, merged] of [[1000, true], [MAX_MERGED_HEADER, false]] as const) {
      const subject = `{{first}} ${'s'.repeat(n)}`;
      const r = await runRewrap(env, `From: shop@example.org\r\nTo: ada@example.com\r\nSubject: ${subject}\r\nX-Postino-Vars: {"first":"Ada"}\r\n\r\nhi\r\n`, ['ada@example.com']);
      const p = await simpleParser(r.copies[0]!.bytes);
      assert.equal(p.subject, merged ? `Ada ${'s'.repeat(n)}` : subject);
    }
  } finally {
    await env.close();
  }
});

test('a 7bit part with lines over 998 octets after rewriting becomes quoted-printable; the text is unchanged', async () => {
  const env = await rewrapEnv({ track: { clicks: true, textLinks: true } });
  try {
    const long = `See https://shop.example/${'a'.repeat(990)} and {{name}}`;
    const raw = `From: shop@example.org\r\nTo: ada@example.com\r\nSubject: x\r\nX-Postino-Vars: {"name":"${'n'.repeat(2000)}"}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n${long}\r\n`;
    const r = await runRewrap(env, raw, ['ada@example.com']);
    assert.equal(r.result.kind, 'done');
    const copy = r.copies[0]!;
    assert.ok(copy.text.split('\r\n').every((l) => Buffer.byteLength(l) <= 998), 'every line ≤ 998 octets');
    assert.match(copy.headers, /Content-Transfer-Encoding: quoted-printable/i);
    const p = await simpleParser(copy.bytes);
    assert.match(p.text ?? '', new RegExp(`^See https://mail\\.example\\.net/t/c/\\S+ and ${'n'.repeat(2000)}`));
  } finally {
    await env.close();
  }
});

test('the event loop keeps turning while the worst inputs are rewrapped (max gap between 1 ms ticks)', async () => {
  const env = await rewrapEnv(ALL_ON);
  try {
    const worst: Array<[string, Buffer]> = [
      ['one line of {{', Buffer.from(mergeTagLine(2048 * KB, 7))],
      ['merge-tag flood', Buffer.from(mergeTagFlood(2048 * KB, 7))],
      ['text URLs', Buffer.from(urlFlood(2048 * KB, 7))],
      ['one URL run', Buffer.from(urlRun(2048 * KB, 7))],
      ['header tags', Buffer.from(headerTagFlood(2048 * KB, 7))],
      ['Subject just under MAX_MERGED_HEADER', Buffer.from(headerTagFlood((MAX_MERGED_HEADER - 1024) * 2, 7))],
      ['boundary flood', Buffer.from(boundaryFlood(2048 * KB, 7))],
      ['deep MIME', Buffer.from(deepMime(20_000))],
      ['10,000 nested multiparts then 1 MB of -- lines', Buffer.from(deepBoundaryFlood(10_000, 1024 * KB, 7))],
      ['wide MIME', Buffer.from(wideMime(50_000))],
    ];
    await timed(env, worst[0]![1]); // warm the JIT
    const gaps: string[] = [];
    let max = 0;
    for (const [name, raw] of worst) {
      // A block in our code shows in every run; a gap from the machine (another process, GC) does not: the least of GAP_RUNS counts.
      let least = Infinity;
      for (let run = 0; run < GAP_RUNS && least >= MAX_GAP_MS / 2; run++) least = Math.min(least, await maxGap(() => runRewrap(env, raw, ['ada@example.com'])));
      gaps.push(`${name} ${least.toFixed(0)} ms`);
      max = Math.max(max, least);
    }
    assert.ok(max < MAX_GAP_MS, `max event-loop gap under ${MAX_GAP_MS} ms: ${gaps.join(', ')}`);
  } finally {
    await env.close();
  }
});

/** ~100 ms is the goal; the margin covers a major GC on a shared 2-core machine. */
const MAX_GAP_MS = 150;
const GAP_RUNS = 3;


import assert from 'node:assert/strict';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { parse } from 'parse5';
import { verifyClickToken, verifyOpenToken } from '../../../../common/tokens.js';
import { findTextUrls } from '../../../../engine/rewrap/steps/tracking.js';
import { seededRandom } from '../../../helpers/random.js';
import { fixture, rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

interface Node {
  nodeName: string;
  tagName?: string;
  attrs?: Array<{ name: string; value: string }>;
  childNodes?: Node[];
  content?: Node;
}

function elements(html: string): Node[] {
  const out: Node[] = [];
  const visit = (n: Node): void => {
    if (n.tagName) out.push(n);
    for (const c of n.childNodes ?? []) visit(c);
    if (n.content) visit(n.content);
  };
  visit(parse(html) as unknown as Node);
  return out;
}

const href = (n: Node): string | undefined => n.attrs?.find((a) => a.name === 'href')?.value;

test('40-link newsletter: every http(s) link rewritten to a signed click token, mailto/tel/anchor untouched, pixel added, DOM + 1 element', async () => {
  const env = await rewrapEnv({ track: { opens: true, clicks: true } });
  try {
    const raw = fixture('newsletter.eml');
    const before = String((await simpleParser(raw)).html);
    const { copies } = await runRewrap(env, raw, ['reader@example.com']);
    const copy = copies[0]!;
    const after = String((await simpleParser(copy.bytes)).html);

    const origLinks = elements(before).filter((n) => n.tagName === 'a').map(href);
    const httpLinks = origLinks.filter((u) => /^https?:/.test(u!));
    assert.equal(httpLinks.length, 40, 'the fixture has 40 http(s) links');

    const els = elements(after);
    assert.equal(els.length, elements(before).length + 1, 'same DOM plus the pixel');
    const newLinks = els.filter((n) => n.tagName === 'a').map(href);
    const clicked: string[] = [];
    newLinks.forEach((u, i) => {
      if (/^https?:/.test(origLinks[i]!)) {
        assert.ok(u!.startsWith('https://mail.example.net/t/c/'), u);
        const claim = verifyClickToken(env.settings.keys, u!.slice('https://mail.example.net/t/c/'.length));
        assert.ok(claim, 'the token verifies');
        assert.equal(claim.recipient, 'reader@example.com');
        assert.equal(claim.queueId, copy.queueId);
        clicked.push(claim.url);
      } else assert.equal(u, origLinks[i], 'mailto:, tel: and #anchors are left alone');
    });
    assert.deepEqual(clicked, httpLinks, 'each token carries its original URL (entities decoded)');
    assert.ok(newLinks.includes('mailto:help@example.org'));

    const imgs = els.filter((n) => n.tagName === 'img');
    const pixel = imgs.at(-1)!;
    const src = pixel.attrs!.find((a) => a.name === 'src')!.value;
    assert.ok(src.startsWith('https://mail.example.net/t/o/'));
    assert.equal(verifyOpenToken(env.settings.keys, src.split('/t/o/')[1]!)?.queueId, copy.queueId);
    assert.equal(imgs.find((n) => n !== pixel)?.attrs?.find((a) => a.name === 'src')?.value, 'https://cdn.example.com/logo.png', 'images are not links');

    const text = (await simpleParser(copy.bytes)).text;
    assert.equal(text, (await simpleParser(raw)).text, 'the plain-text part is untouched');
  } finally {
    await env.close();
  }
});

test('X-Postino-Track: none turns the account default off; the body is then byte-identical', async () => {
  const env = await rewrapEnv({ track: { opens: true, clicks: true } });
  try {
    const raw = fixture('newsletter.eml');
    const withHeader = Buffer.concat([Buffer.from('X-Postino-Track: none\r\n'), raw]);
    const copy = (await runRewrap(env, withHeader, ['reader@example.com'])).copies[0]!;
    const body = (b: Buffer): Buffer => b.subarray(b.indexOf('\r\n\r\n'));
    assert.ok(body(copy.bytes).equals(body(raw)));
  } finally {
    await env.close();
  }
});

test('X-Postino-Track: opens adds only the pixel', async () => {
  const env = await rewrapEnv();
  try {
    const raw = Buffer.concat([Buffer.from('X-Postino-Track: opens\r\n'), fixture('newsletter.eml')]);
    const copy = (await runRewrap(env, raw, ['reader@example.com'])).copies[0]!;
    const html = String((await simpleParser(copy.bytes)).html);
    assert.ok(!html.includes('/t/c/'));
    assert.ok(html.includes('https://mail.example.net/t/o/'));
  } finally {
    await env.close();
  }
});

test('track.textLinks: http(s) URLs in plain-text parts are rewritten too, punctuation after them kept', async () => {
  const env = await rewrapEnv({ track: { clicks: true, textLinks: true } });
  try {
    const raw = 'From: shop@example.org\nTo: a@example.com\nSubject: x\n\nSee https://shop.example.com/a?b=1. Or (http://example.net/x), mailto:help@example.org and https://shop.example.com/{{id}}\n';
    const r = await runRewrap(env, raw.replace('Subject: x\n', 'Subject: x\nX-Postino-Vars: {"id":"42"}\n'), ['ada@example.com']);
    const text = (await simpleParser(r.copies[0]!.bytes)).text!;
    const urls = [...text.matchAll(/https:\/\/mail\.example\.net\/t\/c\/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)/g)].map((m) => verifyClickToken(env.settings.keys, m[1]!)?.url);
    assert.deepEqual(urls, ['https://shop.example.com/a?b=1', 'http://example.net/x', 'https://shop.example.com/42']);
    assert.match(text, /^See https:\/\/mail\.example\.net\/t\/c\/\S+?\. Or \(https:\/\/mail\.example\.net\/t\/c\/\S+?\), mailto:help@example\.org and /);
  } finally {
    await env.close();
  }
});

test('the text URL scanner finds what the former pattern found, on 2,000 seeded random texts (without ", < or >)', () => {
  // The pattern it replaced (quadratic on long runs); kept here only as the reference.
  const reference = /(https?:\/\/[^\s<>"]+?)([.,;:!?)\]'"]*(?:\s|$))/gi;
  const rnd = seededRandom(11);
  const alphabet = ['http://', 'https://', 'HTTP://', 'a', 'b.', '/', '.', ',', ')', ']', "'", '?', '!', ' ', '\n', '\t', 'x', '{{a}}'];
  for (let i = 0; i < 2000; i++) {
    let text = '';
    const n = Math.floor(rnd() * 30);
    for (let j = 0; j < n; j++) text += alphabet[Math.floor(rnd() * alphabet.length)];
    const expected = [...text.matchAll(reference)].map((m) => m[1]);
    const got = findTextUrls(text).map(([a, b]) => text.slice(a, b));
    assert.deepEqual(got, expected, JSON.stringify(text));
  }
});

test('a URL that ends at ", < or > is found (the former pattern wanted white space after it and left it untracked)', () => {
  const text = 'see "https://x.test/a"! or <https://x.test/b>, https://x.test/c"d';
  assert.deepEqual(
    findTextUrls(text).map(([a, b]) => text.slice(a, b)),
    ['https://x.test/a', 'https://x.test/b', 'https://x.test/c'],
  );
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { encodeUrlValue, MAX_TAG, mergeText } from '../../../../engine/rewrap/steps/merge-fields.js';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

const msg = (vars?: string): string =>
  `From: shop@example.org\nTo: ada@example.com\nSubject: Hello {{first|friend}}\n${vars ? `X-Postino-Vars: ${vars}\n` : ''}MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b"\n\n--b\nContent-Type: text/plain; charset=utf-8\n\nHello {{first|friend}}, your code is {{ code }}.\n--b\nContent-Type: text/html; charset=utf-8\n\n<p>Hello {{first|friend}}</p>\n--b--\n`;

test('Hello {{first|friend}} → "Hello Ada" with vars, "Hello friend" without, in subject and body', async () => {
  const env = await rewrapEnv();
  try {
    const withVars = await simpleParser((await runRewrap(env, msg('{"first":"Ada","code":42}'), ['ada@example.com'])).copies[0]!.bytes);
    assert.equal(withVars.subject, 'Hello Ada');
    assert.equal(withVars.text, 'Hello Ada, your code is 42.');
    assert.equal(String(withVars.html), '<p>Hello Ada</p>');
    const without = await simpleParser((await runRewrap(env, msg(), ['ada@example.com'])).copies[0]!.bytes);
    assert.equal(without.subject, 'Hello friend');
    assert.equal(without.text, 'Hello friend, your code is .', 'no value and no default: empty');
  } finally {
    await env.close();
  }
});

test('<script> in a var is escaped in HTML parts (and left as text in plain parts)', async () => {
  const env = await rewrapEnv();
  try {
    const p = await simpleParser((await runRewrap(env, msg('{"first":"<script>alert(1)</script>"}'), ['ada@example.com'])).copies[0]!.bytes);
    assert.equal(String(p.html), '<p>Hello &lt;script&gt;alert(1)&lt;/script&gt;</p>');
    assert.ok(!String(p.html).includes('<script>'));
    assert.equal(p.text, 'Hello <script>alert(1)</script>, your code is .');
  } finally {
    await env.close();
  }
});

test('fields come from the recipient database after X-Postino-Vars; the database is filled from traffic', async () => {
  const env = await rewrapEnv();
  try {
    const first = await runRewrap(env, msg(), ['ada@example.com']);
    await env.store.commit(first.msg.extraOps, { sync: false });
    assert.ok(await env.recipients.get('acme', 'ada@EXAMPLE.com'), 'created by the first message');
    await env.recipients.setFields('acme', 'ada@example.com', { first: 'Ada', code: '7' });
    const p = await simpleParser((await runRewrap(env, msg('{"code":"99"}'), ['ada@example.com'])).copies[0]!.bytes);
    assert.equal(p.text, 'Hello Ada, your code is 99.', 'first from the database, code from the vars');
  } finally {
    await env.close();
  }
});

test('an X-Postino-Vars that is not a JSON object rejects the message', async () => {
  const env = await rewrapEnv();
  try {
    const r = await runRewrap(env, msg('{not json'), ['ada@example.com']);
    assert.deepEqual(r.result, { kind: 'rejected', step: 'parse-controls', reason: 'X-Postino-Vars is not a JSON object' });
    assert.equal(r.copies.length, 0);
  } finally {
    await env.close();
  }
});

test('the tag scanner leaves text that is not a merge tag alone', () => {
  const look = (n: string): string | undefined => ({ a: 'A' })[n];
  assert.equal(mergeText('x {{a}} {{ b | d e }} {{not a tag!}} {{a', look, (s) => s), 'x A  d e  {{not a tag!}} {{a');
});

test('a tag is at most MAX_TAG characters: a `}}` further away ends no tag, and a `{{` flood is left as it was', () => {
  const look = (n: string): string | undefined => ({ a: 'A' })[n];
  const far = `{{a|${'d'.repeat(MAX_TAG)}}}`;
  assert.equal(mergeText(far, look, (s) => s), far);
  assert.equal(mergeText(`{{a|${'d'.repeat(MAX_TAG - 10)}}}`, look, (s) => s), 'A');
  assert.equal(mergeText('{{{{a}} {{ {{a}}', look, (s) => s), '{{A {{ A');
  const flood = '{{'.repeat(100_000);
  assert.equal(mergeText(flood, look, (s) => s), flood);
});

test('encodeUrlValue: a value inside an URL is percent-encoded; a whole http(s) URL is kept, anything else encoded', () => {
  assert.equal(encodeUrlValue('a b&c=d\r\n', false), 'a%20b%26c%3Dd%0D%0A');
  assert.equal(encodeUrlValue('https://x.test/u?a=1&b=2', true), 'https://x.test/u?a=1&b=2');
  assert.equal(encodeUrlValue('javascript:alert(1)', true), 'javascript%3Aalert(1)');
  assert.equal(encodeUrlValue('https://x.test/"><script>', true), 'https%3A%2F%2Fx.test%2F%22%3E%3Cscript%3E');
});

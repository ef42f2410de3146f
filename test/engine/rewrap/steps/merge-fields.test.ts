import assert from 'node:assert/strict';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { mergeText } from '../../../../engine/rewrap/steps/merge-fields.js';
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

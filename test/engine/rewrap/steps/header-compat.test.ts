import assert from 'node:assert/strict';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

const body = 'From: shop@example.org\nTo: a@example.com\nSubject: Hi -name-\n';

test('X-SMTPAPI: category → tag, unique_args → metadata, send_at → schedule, sub → per-recipient substitution', async () => {
  const env = await rewrapEnv();
  try {
    const now = Date.now();
    const sendAt = Math.floor(now / 1000) + 3600;
    const api = JSON.stringify({ category: ['newsletter', 'nov'], unique_args: { customer: 'c-77' }, send_at: sendAt, sub: { '-name-': ['Ada', 'Bob'] } });
    const r = await runRewrap(env, `${body}X-SMTPAPI: ${api}\n\nDear -name-.\n`, ['a@example.com', 'b@example.com'], 'shop@example.org', now);
    assert.equal(r.msg.controls.tag, 'newsletter,nov');
    assert.deepEqual(r.msg.controls.metadata, { customer: 'c-77' });
    assert.equal(r.msg.due, sendAt * 1000);
    const [a, b] = await Promise.all(r.copies.map((c) => simpleParser(c.bytes)));
    assert.equal(a!.subject, 'Hi Ada');
    assert.equal(b!.text, 'Dear Bob.\n');
  } finally {
    await env.close();
  }
});

test('Postmark, SES and Mailgun headers map onto tag, metadata, stream, vars and send time', async () => {
  const env = await rewrapEnv();
  try {
    const now = Date.parse('2026-11-25T10:00:00Z');
    const pm = await runRewrap(env, `${body}X-PM-Tag: welcome\nX-PM-Metadata-customer: c-1\nX-PM-Message-Stream: broadcast\n\nx\n`, ['a@example.com'], 'shop@example.org', now);
    assert.equal(pm.msg.controls.tag, 'welcome');
    assert.deepEqual(pm.msg.controls.metadata, { customer: 'c-1' });
    assert.equal(pm.msg.controls.stream, 'bulk');
    const ses = await runRewrap(env, `${body}X-SES-CONFIGURATION-SET: marketing\nX-SES-MESSAGE-TAGS: campaign=nov, segment=vip\n\nx\n`, ['a@example.com'], 'shop@example.org', now);
    assert.deepEqual(ses.msg.controls.metadata, { ses_configuration_set: 'marketing', campaign: 'nov', segment: 'vip' });
    const mg = await runRewrap(env, `${body}X-Mailgun-Tag: promo\nX-Mailgun-Variables: {"first":"Ada"}\nX-Mailgun-Deliver-By: Wed, 25 Nov 2026 12:00:00 +0000\n\nHello {{first}}\n`, ['a@example.com'], 'shop@example.org', now);
    assert.equal(mg.msg.controls.tag, 'promo');
    assert.equal(mg.msg.due, Date.parse('2026-11-25T12:00:00Z'));
    assert.equal((await simpleParser(mg.copies[0]!.bytes)).text, 'Hello Ada\n');
  } finally {
    await env.close();
  }
});

test('our own headers win over mapped ones', async () => {
  const env = await rewrapEnv();
  try {
    const r = await runRewrap(env, `${body}X-PM-Tag: theirs\nX-Postino-Tag: ours\n\nx\n`, ['a@example.com']);
    assert.equal(r.msg.controls.tag, 'ours');
  } finally {
    await env.close();
  }
});

test('a control header that passed no listener check (X-SMTPAPI send_at 9e12, malformed vars) rejects the message with the reason instead of throwing', async () => {
  const env = await rewrapEnv();
  try {
    const now = Date.parse('2026-11-25T10:00:00Z');
    const far = await runRewrap(env, `${body}X-SMTPAPI: {"send_at": 9e12}\n\nx\n`, ['a@example.com'], 'shop@example.org', now);
    assert.deepEqual(far.result, { kind: 'rejected', step: 'parse-controls', reason: 'X-SMTPAPI: send_at is more than 30 days ahead (engine.maxScheduleDays)' });
    assert.equal(far.copies.length, 0);
    const vars = await runRewrap(env, `${body}X-Mailgun-Variables: {"a": {"b": 1}}\n\nx\n`, ['a@example.com'], 'shop@example.org', now);
    assert.equal(vars.result.kind, 'rejected');
  } finally {
    await env.close();
  }
});

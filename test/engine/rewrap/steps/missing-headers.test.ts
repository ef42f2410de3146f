import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

test('a message without Message-ID and Date gets both, the same in every copy', async () => {
  const env = await rewrapEnv();
  try {
    const out = await runRewrap(env, 'From: shop@example.org\r\nTo: a@example.com\r\nSubject: x\r\n\r\nhello\r\n', ['a@example.com', 'b@example.com']);
    const ids = out.copies.map((c) => /^Message-ID: (<[^>]+@[^>]+>)\r$/m.exec(c.headers)?.[1]);
    assert.ok(ids[0], 'Message-ID added');
    assert.equal(ids[0], ids[1], 'one Message-ID for the message, not one per copy');
    const dates = out.copies.map((c) => /^Date: (.+)\r$/m.exec(c.headers)?.[1]);
    assert.ok(dates[0] && !Number.isNaN(Date.parse(dates[0])), `Date added: ${dates[0]}`);
    assert.equal(dates[0], dates[1]);
  } finally {
    await env.close();
  }
});

test('existing Message-ID and Date are kept as they are', async () => {
  const env = await rewrapEnv();
  try {
    const raw = 'From: shop@example.org\r\nTo: a@example.com\r\nDate: Tue, 24 Nov 2026 09:00:00 +0100\r\nMessage-ID: <order-1@shop.example>\r\nSubject: x\r\n\r\nhello\r\n';
    const h = (await runRewrap(env, raw, ['a@example.com'])).copies[0]!.headers;
    assert.equal((h.match(/^Message-ID:/gim) ?? []).length, 1);
    assert.match(h, /^Message-ID: <order-1@shop\.example>\r$/m);
    assert.equal((h.match(/^Date:/gim) ?? []).length, 1);
    assert.match(h, /^Date: Tue, 24 Nov 2026 09:00:00 \+0100\r$/m);
  } finally {
    await env.close();
  }
});

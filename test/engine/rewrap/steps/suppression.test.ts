import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

const msg = (extra = ''): string => `From: shop@example.org\nTo: a@example.com\nSubject: x\n${extra}\nhello\n`;

test('a suppressed recipient gets no copy; the domain is compared case-insensitively', async () => {
  const env = await rewrapEnv();
  try {
    await env.suppression.add('acme', { address: 'bob@EXAMPLE.com', scope: '*', reason: 'hard-bounce' });
    const { result, copies } = await runRewrap(env, msg(), ['ada@example.com', 'bob@example.COM']);
    assert.deepEqual(copies.map((c) => c.recipient), ['ada@example.com']);
    assert.equal(result.kind, 'done');
    if (result.kind === 'done') assert.deepEqual(result.suppressed, [{ recipient: 'bob@example.COM', step: 'suppression', reason: 'hard-bounce (account)' }]);
  } finally {
    await env.close();
  }
});

test('X-Postino-List scope: a list unsubscribe stops bulk mail of that list only', async () => {
  const env = await rewrapEnv();
  try {
    await env.suppression.add('acme', { address: 'ada@example.com', scope: 'list:news', reason: 'unsubscribe' });
    const news = await runRewrap(env, msg('X-Postino-List: news\nX-Postino-Stream: bulk\n'), ['ada@example.com']);
    assert.equal(news.copies.length, 0, 'suppressed for its list');
    const other = await runRewrap(env, msg('X-Postino-List: offers\nX-Postino-Stream: bulk\n'), ['ada@example.com']);
    assert.equal(other.copies.length, 1, 'another list still reaches her');
  } finally {
    await env.close();
  }
});

test('transactional mail skips unsubscribes but never hard bounces or complaints', async () => {
  const env = await rewrapEnv();
  try {
    await env.suppression.add('acme', { address: 'unsub@example.com', scope: '*', reason: 'unsubscribe' });
    await env.suppression.add('acme', { address: 'complained@example.com', scope: '*', reason: 'complaint' });
    const tx = await runRewrap(env, msg('X-Postino-Stream: transactional\n'), ['unsub@example.com', 'complained@example.com']);
    assert.deepEqual(tx.copies.map((c) => c.recipient), ['unsub@example.com']);
    const bulk = await runRewrap(env, msg('X-Postino-Stream: bulk\n'), ['unsub@example.com', 'complained@example.com']);
    assert.equal(bulk.copies.length, 0);
  } finally {
    await env.close();
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifyUnsubscribeToken } from '../../../../common/tokens.js';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

const msg = (extra = '', own = 'List-Unsubscribe: <mailto:old@example.org>\n'): string => `From: shop@example.org\nTo: a@example.com\n${own}Subject: x\n${extra}\nhello\n`;

function unfold(headers: string): string {
  return headers.replace(/\r\n[ \t]+/g, ' ');
}

test('every copy gets an https one-click link and a mailto, the token naming account, list and recipient (RFC 8058)', async () => {
  const env = await rewrapEnv();
  try {
    const { copies } = await runRewrap(env, msg('X-Postino-List: news\n', ''), ['ada@example.com']);
    const h = unfold(copies[0]!.headers);
    const m = /^List-Unsubscribe: <https:\/\/mail\.example\.net\/u\/([A-Za-z0-9_.-]+)>, <mailto:unsubscribe@postino\.localhost\?subject=unsubscribe%20([^>]+)>\r$/m.exec(h);
    assert.ok(m, h);
    assert.equal(m[1], m[2]);
    assert.deepEqual(verifyUnsubscribeToken(env.settings.keys, m[1]!), { account: 'acme', list: 'news', recipient: 'ada@example.com', queueId: copies[0]!.queueId });
    assert.match(h, /^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r$/m);
    assert.equal((h.match(/^List-Unsubscribe:/gm) ?? []).length, 1);
  } finally {
    await env.close();
  }
});

test("the application's own List-Unsubscribe: kept by default, replaced or joined per account", async () => {
  for (const [policy, expect] of [
    [undefined, /^List-Unsubscribe: <mailto:old@example\.org>\r$/m],
    ['keep', /^List-Unsubscribe: <mailto:old@example\.org>\r$/m],
    ['replace', /^List-Unsubscribe: <https:\/\/mail\.example\.net\/u\/[^>]+>, <mailto:unsubscribe@[^>]+>\r$/m],
    ['add', /^List-Unsubscribe: <https:\/\/mail\.example\.net\/u\/[^>]+>, <mailto:unsubscribe@[^>]+>, <mailto:old@example\.org>\r$/m],
  ] as const) {
    const env = await rewrapEnv(policy ? { existingListUnsubscribe: policy } : {});
    try {
      const { copies } = await runRewrap(env, msg(), ['ada@example.com']);
      const h = unfold(copies[0]!.headers);
      assert.match(h, expect, `policy ${policy ?? '(default)'}`);
      assert.equal((h.match(/^List-Unsubscribe:/gm) ?? []).length, 1, 'one field');
      assert.equal(/^List-Unsubscribe-Post:/m.test(h), policy === 'replace' || policy === 'add', 'one-click only where our link is there');
    } finally {
      await env.close();
    }
  }
});

test('bulk mail whose own header lacks one-click gets ours beside it even under keep', async () => {
  const env = await rewrapEnv();
  try {
    const { copies } = await runRewrap(env, msg('X-Postino-Stream: bulk\n'), ['ada@example.com']);
    const h = unfold(copies[0]!.headers);
    assert.match(h, /^List-Unsubscribe: <https:\/\/mail\.example\.net\/u\/[^>]+>, <mailto:[^>]+>, <mailto:old@example\.org>\r$/m);
    assert.match(h, /^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r$/m);
    const own = await runRewrap(env, msg('X-Postino-Stream: bulk\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\n', 'List-Unsubscribe: <https://shop.example.org/unsub/1>\n'), ['ada@example.com']);
    assert.match(unfold(own.copies[0]!.headers), /^List-Unsubscribe: <https:\/\/shop\.example\.org\/unsub\/1>\r$/m, 'their one-click header is kept as it is');
  } finally {
    await env.close();
  }
});

test('an account that disables it gets none on transactional mail, but bulk mail always has it', async () => {
  const env = await rewrapEnv({ unsubscribe: false });
  try {
    const tx = await runRewrap(env, msg(), ['ada@example.com']);
    assert.match(tx.copies[0]!.headers, /^List-Unsubscribe: <mailto:old@example\.org>\r$/m, 'left as the application wrote it');
    assert.doesNotMatch(tx.copies[0]!.headers, /List-Unsubscribe-Post/);
    const bulk = await runRewrap(env, msg('X-Postino-Stream: bulk\n'), ['ada@example.com']);
    assert.match(bulk.copies[0]!.headers, /^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r$/m);
  } finally {
    await env.close();
  }
});

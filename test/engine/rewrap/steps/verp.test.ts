import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifyVerpToken, verpQueueId } from '../../../../common/tokens.js';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

const RAW = 'From: shop@example.org\nTo: a@example.com\nSubject: x\n\nhello\n';

test('each copy returns to bounces+<token>@<bounce domain>, the token naming its queue id and recipient', async () => {
  const env = await rewrapEnv({ bounceDomain: 'b.acme.example' });
  try {
    const { copies } = await runRewrap(env, RAW, ['a@example.com', 'b@example.com']);
    for (const c of copies) {
      const m = /^bounces\+([^@]+)@b\.acme\.example$/.exec(c.mailFrom);
      assert.ok(m, c.mailFrom);
      assert.equal(verpQueueId(m[1]!), c.queueId);
      assert.ok(verifyVerpToken(env.settings.keys, m[1]!, c.recipient));
      assert.ok(!verifyVerpToken(env.settings.keys, m[1]!, c.recipient === 'a@example.com' ? 'b@example.com' : 'a@example.com'));
    }
  } finally {
    await env.close();
  }
});

test('without a bounce domain the sender is kept, and a null sender stays null', async () => {
  const env = await rewrapEnv();
  try {
    assert.equal((await runRewrap(env, RAW, ['a@example.com'])).copies[0]!.mailFrom, 'shop@example.org');
  } finally {
    await env.close();
  }
  const env2 = await rewrapEnv({ bounceDomain: 'b.acme.example' });
  try {
    assert.equal((await runRewrap(env2, RAW, ['a@example.com'], '')).copies[0]!.mailFrom, '');
  } finally {
    await env2.close();
  }
});

test('every copy carries X-Message-Ref, its signed token, also without VERP; one sent by the application is dropped', async () => {
  const env = await rewrapEnv();
  try {
    const { copies } = await runRewrap(env, 'From: shop@example.org\nTo: a@example.com\nX-Message-Ref: forged-0-aaaaaaaaaaaaaaaa\nSubject: x\n\nhello\n', ['a@example.com']);
    const refs = [...copies[0]!.headers.matchAll(/^X-Message-Ref: (.+)\r$/gm)].map((m) => m[1]!);
    assert.equal(refs.length, 1, 'only ours');
    assert.equal(verpQueueId(refs[0]!), copies[0]!.queueId);
    assert.ok(verifyVerpToken(env.settings.keys, refs[0]!, 'a@example.com'));
  } finally {
    await env.close();
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

const RAW = `From: shop@example.org
To: a@example.com
Cc: b@example.com
Bcc: c@example.com
Subject: Order
Message-ID: <order-1@example.org>

Thanks.
`;

test('To: a, Cc: b, envelope a, b, c: three copies; c sees itself in To:, nobody sees c; own queue ids and VERP paths; Message-ID kept', async () => {
  const env = await rewrapEnv({}, { bounceDomain: 'bounce.example.net' });
  try {
    const { copies } = await runRewrap(env, RAW, ['a@example.com', 'b@example.com', 'c@example.com']);
    assert.equal(copies.length, 3);
    const [a, b, c] = copies as [(typeof copies)[0], (typeof copies)[0], (typeof copies)[0]];
    assert.match(c.headers, /^To: <c@example\.com>\r$/m, "c's copy is addressed to c");
    for (const x of [a, b]) {
      assert.ok(!x.text.includes('c@example.com'), `${x.recipient}'s copy never mentions c`);
      assert.match(x.headers, /^To: a@example\.com\r$/m);
      assert.match(x.headers, /^Cc: b@example\.com\r$/m);
    }
    for (const x of copies) {
      assert.doesNotMatch(x.headers, /^Bcc:/im, 'no Bcc: header on any copy');
      assert.match(x.headers, /^Message-ID: <order-1@example\.org>\r$/m);
      assert.match(x.headers, new RegExp(`for <${x.recipient}>;`), 'Received: names only this copy\'s recipient');
    }
    assert.equal(new Set(copies.map((x) => x.queueId)).size, 3, 'each copy has its own queue id');
    assert.equal(new Set(copies.map((x) => x.mailFrom)).size, 3, 'each copy has its own VERP return path');
  } finally {
    await env.close();
  }
});

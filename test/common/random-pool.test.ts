import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomBase64url, randomBuffer, randomHex } from '../../common/random-pool.js';

test('pooled random values are the asked length and never repeat, across many refills of the pool', () => {
  const seen = new Set<string>();
  // 20,000 × 9 bytes is ~44 refills of the 4 KiB pool: a byte handed out twice would show as a repeat.
  for (let i = 0; i < 20_000; i++) {
    const h = randomHex(9);
    assert.match(h, /^[0-9a-f]{18}$/);
    seen.add(h);
  }
  assert.equal(seen.size, 20_000);
  assert.match(randomBase64url(9), /^[A-Za-z0-9_-]{12}$/);
});

test('a random buffer is its own copy: later draws do not change it', () => {
  const salt = randomBuffer(16);
  const copy = Buffer.from(salt);
  for (let i = 0; i < 1_000; i++) randomHex(16);
  assert.deepEqual(salt, copy);
  assert.throws(() => randomHex(5000), /more than the pool holds/);
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { newQueueId } from '../../common/durable-queue.js';
import {
  signClickToken,
  signOpenToken,
  signUnsubscribeToken,
  signVerpToken,
  verifyClickToken,
  verifyOpenToken,
  verifyUnsubscribeToken,
  verifyVerpToken,
  verpAddress,
  verpQueueId,
} from '../../common/tokens.js';

const KEY = 'k'.repeat(43);

function flip(token: string, at: number): string {
  const c = token[at]!;
  return token.slice(0, at) + (c === 'A' ? 'B' : 'A') + token.slice(at + 1);
}

describe('VERP tokens', () => {
  test('name the queue id, verify only for the recipient they were made for, and fit a local part', () => {
    const id = newQueueId();
    const t = signVerpToken(KEY, id, 'Ada@Example.com');
    assert.equal(verpQueueId(t), id);
    assert.ok(verifyVerpToken(KEY, t, 'ada@example.com'));
    assert.ok(!verifyVerpToken(KEY, t, 'bob@example.com'));
    assert.ok(!verifyVerpToken('other-key', t, 'ada@example.com'));
    assert.ok(verifyVerpToken(KEY, t.toUpperCase(), 'ada@example.com'), 'an MTA that upper-cases the local part does not break it');
    const addr = verpAddress(KEY, 'bounces', 'bounce.example.net', id, 'ada@example.com');
    assert.ok(addr.split('@')[0]!.length <= 64, 'RFC 5321 4.5.3.1.1: local part ≤ 64 octets');
    assert.match(addr, /^bounces\+[0-9a-z]+-[a-z2-7]+@bounce\.example\.net$/);
  });

  test('a tampered VERP token does not verify', () => {
    const id = newQueueId();
    const t = signVerpToken(KEY, id, 'ada@example.com');
    const other = newQueueId();
    assert.ok(!verifyVerpToken(KEY, other.toLowerCase() + t.slice(t.indexOf('-')), 'ada@example.com'), 'another queue id under the same MAC');
    assert.ok(!verifyVerpToken(KEY, t.slice(0, -1) + (t.endsWith('a') ? 'b' : 'a'), 'ada@example.com'));
    assert.equal(verpQueueId('garbage'), undefined);
  });
});

describe('click, open and unsubscribe tokens', () => {
  const claim = { account: 'acme', queueId: newQueueId(), recipient: 'ada@example.com' };

  test('a click token carries the original URL', () => {
    const url = 'https://shop.example.com/p/1?a=1&b=2#x';
    const t = signClickToken(KEY, { ...claim, url });
    assert.match(t, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'URL-safe');
    assert.deepEqual(verifyClickToken(KEY, t), { ...claim, url });
  });

  test('a tampered click token is rejected (the HTTP side answers 400, never a redirect)', () => {
    const t = signClickToken(KEY, { ...claim, url: 'https://shop.example.com/' });
    // Every character, the last one too (base64's spare bits must not let a changed token pass).
    for (let at = 0; at < t.length; at++) if (t[at] !== '.') assert.equal(verifyClickToken(KEY, flip(t, at)), undefined, `flipped at ${at}`);
    // A payload naming another URL, signed by nobody:
    const evil = Buffer.from(JSON.stringify(['acme', claim.queueId, claim.recipient, 'https://evil.example/'])).toString('base64url');
    assert.equal(verifyClickToken(KEY, `${evil}.${t.split('.')[1]}`), undefined);
    assert.equal(verifyClickToken(KEY, t + '.x'), undefined);
    assert.equal(verifyClickToken(KEY, ''), undefined);
    assert.equal(verifyClickToken('another-key', t), undefined);
  });

  test('a click token for a non-http URL never verifies', () => {
    assert.equal(verifyClickToken(KEY, signClickToken(KEY, { ...claim, url: 'javascript:alert(1)' })), undefined);
  });

  test('token kinds do not cross-verify', () => {
    const open = signOpenToken(KEY, claim);
    assert.deepEqual(verifyOpenToken(KEY, open), claim);
    assert.equal(verifyUnsubscribeToken(KEY, open), undefined);
    assert.equal(verifyClickToken(KEY, open), undefined);
  });

  test('an unsubscribe token names account, list and recipient', () => {
    const t = signUnsubscribeToken(KEY, { account: 'acme', list: 'news', recipient: 'ada@example.com' });
    assert.deepEqual(verifyUnsubscribeToken(KEY, t), { account: 'acme', list: 'news', recipient: 'ada@example.com' });
    assert.equal(verifyUnsubscribeToken(KEY, flip(t, 3)), undefined);
  });
});

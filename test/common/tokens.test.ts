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
  verpTokenOf,
} from '../../common/tokens.js';
import { FileKeyRing, memoryKeyRing, rotateKeys } from '../../common/signing-keys.js';
import { tempDir } from '../helpers/postino.js';

const KEY = memoryKeyRing('k'.repeat(43));
const OTHER = memoryKeyRing('another-key');

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
    assert.ok(!verifyVerpToken(OTHER, t, 'ada@example.com'));
    assert.ok(verifyVerpToken(KEY, t.toUpperCase(), 'ada@example.com'), 'an MTA that upper-cases the local part does not break it');
    const addr = verpAddress(KEY, 'bounces', 'bounce.example.net', id, 'ada@example.com');
    assert.ok(addr.split('@')[0]!.length <= 64, 'RFC 5321 4.5.3.1.1: local part ≤ 64 octets');
    assert.match(addr, /^bounces\+[0-9a-z]+-[0-9a-z]+-[a-z2-7]+@bounce\.example\.net$/);
    assert.equal(verpTokenOf(addr.toUpperCase(), 'bounces', new Set(['bounce.example.net'])), t.toUpperCase(), 'found in an upper-cased address');
    assert.equal(verpTokenOf(addr, 'bounces', new Set(['other.example.net'])), undefined, 'only our bounce domains');
    assert.equal(verpTokenOf(addr.replace('bounces+', 'x+'), 'bounces', new Set(['bounce.example.net'])), undefined, 'only our local part');
  });

  test('a tampered VERP token does not verify', () => {
    const id = newQueueId();
    const t = signVerpToken(KEY, id, 'ada@example.com');
    const other = newQueueId();
    assert.ok(!verifyVerpToken(KEY, other.toLowerCase() + t.slice(t.indexOf('-')), 'ada@example.com'), 'another queue id under the same MAC');
    for (let at = 0; at < t.length; at++) {
      if (t[at] === '-') continue;
      const c = t[at] === 'a' ? 'b' : 'a';
      assert.ok(!verifyVerpToken(KEY, t.slice(0, at) + c + t.slice(at + 1), 'ada@example.com'), `changed at ${at}`);
    }
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
    // A payload naming another URL, sealed by nobody:
    const evil = Buffer.from(JSON.stringify(['acme', claim.queueId, claim.recipient, 'https://evil.example/', 0])).toString('base64url');
    assert.equal(verifyClickToken(KEY, `1.${evil}`), undefined);
    assert.equal(verifyClickToken(KEY, t + '.x'), undefined);
    assert.equal(verifyClickToken(KEY, t.slice(0, -4)), undefined, 'truncated');
    assert.equal(verifyClickToken(KEY, ''), undefined);
    assert.equal(verifyClickToken(OTHER, t), undefined);
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

  test('an unsubscribe token names account, list, recipient and copy, and the address cannot be read in it', () => {
    const c = { account: 'acme', list: 'news', recipient: 'ada@example.com', queueId: claim.queueId };
    const t = signUnsubscribeToken(KEY, c);
    assert.deepEqual(verifyUnsubscribeToken(KEY, t), c);
    for (let at = 0; at < t.length; at++) if (t[at] !== '.') assert.equal(verifyUnsubscribeToken(KEY, flip(t, at)), undefined, `flipped at ${at}`);
    const decoded = Buffer.from(t.split('.')[1]!, 'base64url').toString('latin1');
    assert.doesNotMatch(decoded, /ada|example|acme|news/, 'encrypted, not only signed');
    assert.notEqual(signUnsubscribeToken(KEY, c), t, 'two links for the same claim differ (random salt)');
  });

  test('open and click tokens with an expiry stop verifying after it; unsubscribe tokens have none', () => {
    const now = Date.UTC(2026, 10, 30);
    const exp = now / 1000 + 3600;
    const click = signClickToken(KEY, { ...claim, url: 'https://shop.example.com/' }, exp);
    const open = signOpenToken(KEY, claim, exp);
    assert.ok(verifyClickToken(KEY, click, now + 3599_000));
    assert.ok(verifyOpenToken(KEY, open, now + 3599_000));
    assert.equal(verifyClickToken(KEY, click, now + 3601_000), undefined);
    assert.equal(verifyOpenToken(KEY, open, now + 3601_000), undefined);
    assert.ok(verifyClickToken(KEY, signClickToken(KEY, { ...claim, url: 'https://shop.example.com/' }), now + 100 * 365 * 86_400_000), 'no expiry by default');
  });
});

describe('key rotation', () => {
  test('tokens made before a rotation verify after it; new tokens use the new key id', () => {
    const dir = tempDir('keys');
    const ring = FileKeyRing.open(dir);
    const c = { account: 'acme', list: '', recipient: 'ada@example.com', queueId: newQueueId() };
    const oldUnsub = signUnsubscribeToken(ring, c);
    const oldVerp = signVerpToken(ring, c.queueId, c.recipient);
    assert.match(oldUnsub, /^1\./);
    const r = rotateKeys(dir);
    assert.deepEqual(r, { id: '2', keys: 2 });
    const after = FileKeyRing.open(dir);
    assert.equal(after.current.id, '2');
    assert.deepEqual(verifyUnsubscribeToken(after, oldUnsub), c);
    assert.ok(verifyVerpToken(after, oldVerp, c.recipient));
    assert.match(signUnsubscribeToken(after, c), /^2\./);
    // A node started before the rotation learns the new key when a token names it.
    const newer = signUnsubscribeToken(after, c);
    let t = Date.now();
    const running = FileKeyRing.open(dir, () => (t += 2_000));
    assert.deepEqual(verifyUnsubscribeToken(running, newer), c);
    assert.equal(verifyUnsubscribeToken(running, newer.replace(/^2\./, '9.')), undefined, 'an unknown key id');
  });
});

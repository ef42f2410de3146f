/* Dashboard sessions: unguessable ids, a CSRF token each, ended by logout or idleness. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SessionStore } from '../../../engine/dashboard/sessions.js';

test('a session is found by its id until logout; ids and CSRF tokens differ per session', () => {
  const s = new SessionStore(60_000);
  const a = s.create({ kind: 'node' }, 'operator');
  const b = s.create({ kind: 'account', account: 'shop', keyId: 'password' }, 'shop');
  assert.notEqual(a.id, b.id);
  assert.notEqual(a.session.csrf, b.session.csrf);
  assert.ok(a.id.length >= 43, 'at least 256 bits');
  assert.equal(s.get(a.id)?.label, 'operator');
  assert.deepEqual(s.get(b.id)?.principal, { kind: 'account', account: 'shop', keyId: 'password' });
  assert.equal(s.get('not-a-session'), undefined);
  assert.equal(s.get(undefined), undefined);
  s.destroy(a.id);
  assert.equal(s.get(a.id), undefined, 'logged out');
  assert.ok(s.get(b.id), 'the other session lives on');
});

test('a session idle longer than the limit is gone; each request extends it', () => {
  let now = 1_000_000;
  const s = new SessionStore(10_000, () => now);
  const { id } = s.create({ kind: 'node' }, 'operator');
  now += 9_000;
  assert.ok(s.get(id), 'used within the limit');
  now += 9_000;
  assert.ok(s.get(id), 'the last use counts, not the login');
  now += 10_001;
  assert.equal(s.get(id), undefined, 'idle too long');
  assert.equal(s.get(id), undefined, 'and it stays gone');
});

/* Dashboard sessions: unguessable ids, a CSRF token each, ended by logout or idleness. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemorySessionStore } from '../../../engine/dashboard/sessions.js';

test('a session is found by its id until logout; ids and CSRF tokens differ per session', async () => {
  const s = new MemorySessionStore(60_000);
  const a = await s.create({ kind: 'node' }, 'operator');
  const b = await s.create({ kind: 'account', account: 'shop', keyId: 'password' }, 'shop');
  assert.notEqual(a.id, b.id);
  assert.notEqual(a.session.csrf, b.session.csrf);
  assert.ok(a.id.length >= 43, 'at least 256 bits');
  assert.equal((await s.get(a.id))?.label, 'operator');
  assert.deepEqual((await s.get(b.id))?.principal, { kind: 'account', account: 'shop', keyId: 'password' });
  assert.equal(await s.get('not-a-session'), undefined);
  assert.equal(await s.get(undefined), undefined);
  await s.destroy(a.id);
  assert.equal(await s.get(a.id), undefined, 'logged out');
  assert.ok(await s.get(b.id), 'the other session lives on');
});

test('a session idle longer than the limit is gone; each request extends it', async () => {
  let now = 1_000_000;
  const s = new MemorySessionStore(10_000, () => now);
  const { id } = await s.create({ kind: 'node' }, 'operator');
  now += 9_000;
  assert.ok(await s.get(id), 'used within the limit');
  now += 9_000;
  assert.ok(await s.get(id), 'the last use counts, not the login');
  now += 10_001;
  assert.equal(await s.get(id), undefined, 'idle too long');
  assert.equal(await s.get(id), undefined, 'and it stays gone');
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Store } from '../../common/store.js';
import { LevelSuppressionList } from '../../engine/suppression.js';
import { tempDir } from '../helpers/postino.js';

test('domain compared case-insensitively, local part exactly; transactional skips unsubscribes only', async () => {
  const store = await Store.open(tempDir('sup'));
  const s = new LevelSuppressionList(store);
  await s.add('acme', { address: 'Ada@Example.COM', scope: '*', reason: 'hard-bounce' });
  await s.add('acme', { address: 'bob@example.com', scope: 'list:news', reason: 'unsubscribe' });
  await s.add('acme', { address: 'cy@example.com', scope: '*', reason: 'unsubscribe' });
  assert.equal((await s.check('acme', 'Ada@example.com', { stream: 'bulk' }))?.reason, 'hard-bounce');
  assert.equal(await s.check('acme', 'ada@example.com', { stream: 'bulk' }), undefined, 'local part is case-sensitive');
  assert.equal((await s.check('acme', 'Ada@EXAMPLE.com', { stream: 'transactional' }))?.reason, 'hard-bounce', 'hard bounces stop transactional mail too');
  assert.equal((await s.check('acme', 'bob@example.com', { stream: 'bulk', list: 'news' }))?.scope, 'list:news');
  assert.equal(await s.check('acme', 'bob@example.com', { stream: 'bulk', list: 'offers' }), undefined, 'another list is not affected');
  assert.equal(await s.check('acme', 'bob@example.com', { stream: 'transactional', list: 'news' }), undefined);
  assert.equal(await s.check('acme', 'cy@example.com', { stream: 'transactional' }), undefined);
  assert.equal(await s.check('other', 'Ada@example.com', { stream: 'bulk' }), undefined, 'per account');
  await store.close();
});

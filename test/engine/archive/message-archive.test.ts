/*
 * The message archive on real files: a message is kept per UTC day and account (a blob
 * hard-linked, an inline body written), read back only through its own account, not
 * kept when the account's archive is off; retention drops whole day folders past each
 * account's retentionDays as the injected clock says, and keeps the rest.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../../common/config.js';
import { newQueueId } from '../../../common/durable-queue.js';
import { pruneArchive } from '../../../engine/archive/archive-retention.js';
import { archivePolicy, dayOfId, MessageArchive, type ArchivePolicy } from '../../../engine/archive/message-archive.js';
import { tempDir } from '../../helpers/postino.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 20, 23, 59, 0); // late in the day: the day is the id's, in UTC

function archiveWith(policies: Record<string, ArchivePolicy>): MessageArchive {
  return new MessageArchive(path.join(tempDir('archive'), 'archive'), (a) => policies[a] ?? { enabled: true, retentionDays: 7 });
}

test('the day is the one the queue id was made on (UTC); other shapes are not archived', () => {
  assert.equal(dayOfId(newQueueId(T0)), '2026-11-20');
  assert.equal(dayOfId(newQueueId(T0 + 60_000)), '2026-11-21');
  assert.equal(dayOfId('../../etc/passwd'), undefined);
  assert.equal(dayOfId('ZZZZZZZZZZZZZZZZ'), undefined, 'a time far out of range');
});

test('kept per account: inline bytes written, a blob hard-linked; read only through its own account', async () => {
  const archive = archiveWith({ off: { enabled: false, retentionDays: 7 } });
  const a = newQueueId(T0);
  const inline = Buffer.from('Subject: a\r\n\r\nHello\r\n');
  assert.equal(await archive.keep({ id: a, account: 'shop', read: async () => inline }), true);
  const blob = path.join(tempDir('archive-blob'), 'blob');
  fs.writeFileSync(blob, 'Subject: big\r\n\r\n' + 'x'.repeat(300_000));
  const b = newQueueId(T0);
  assert.equal(await archive.keep({ id: b, account: 'shop', file: blob, read: async () => assert.fail('a blob is linked, not read') }), true);
  assert.equal(await archive.keep({ id: b, account: 'shop', file: blob, read: async () => assert.fail('not read') }), true, 'a second attempt is harmless');
  fs.rmSync(blob); // the queue removes its blob after the rewrap: the archive's link keeps the bytes
  assert.deepEqual(await archive.read('shop', a), inline);
  assert.equal((await archive.read('shop', b))?.length, 16 + 300_000);
  assert.equal(await archive.read('crm', a), undefined, 'another account never reaches it');
  assert.equal(await archive.read('../shop', a), undefined);
  assert.equal(await archive.keep({ id: newQueueId(T0), account: 'off', read: async () => inline }), false, 'archive off: nothing kept');
  assert.equal(fs.existsSync(path.join(archive.dir, '2026-11-20', 'off')), false);
});

test('retention drops whole days past each account\'s retentionDays, as the injected clock says', async () => {
  const archive = archiveWith({ shop: { enabled: true, retentionDays: 7 }, crm: { enabled: true, retentionDays: 30 } });
  const ids: Record<string, string> = {};
  for (const [name, account, days] of [['shop-old', 'shop', 8], ['shop-new', 'shop', 6], ['crm-old', 'crm', 8]] as const) {
    ids[name] = newQueueId(T0 - days * DAY);
    await archive.keep({ id: ids[name]!, account, read: async () => Buffer.from(name) });
  }
  // T0 is 2026-11-20 23:59: the shop message of 8 days ago (11-12) ended 7 days and 1 minute ago.
  const r = await pruneArchive(archive, T0);
  assert.equal(r.folders, 1);
  assert.equal(await archive.read('shop', ids['shop-old']!), undefined, 'past 7 days: gone');
  assert.equal((await archive.read('shop', ids['shop-new']!))?.toString(), 'shop-new');
  assert.equal((await archive.read('crm', ids['crm-old']!))?.toString(), 'crm-old', 'crm keeps 30 days');
  assert.equal(fs.existsSync(path.join(archive.dir, '2026-11-12', 'shop')), false);
  // A month on, everything went, empty day folders included; a new message of a pruned day's account is kept again.
  await pruneArchive(archive, T0 + 40 * DAY);
  assert.deepEqual(fs.readdirSync(archive.dir), []);
  const again = newQueueId(T0 + 40 * DAY);
  assert.equal(await archive.keep({ id: again, account: 'shop', read: async () => Buffer.from('again') }), true);
  assert.equal((await archive.read('shop', again))?.toString(), 'again');
});

test('the policy: an account\'s own values, else the node\'s; off by default', () => {
  const c = parseConfig({ accounts: [{ id: 'a' }, { id: 'b', archive: { enabled: true, retentionDays: 3 } }] });
  assert.deepEqual(archivePolicy(c.engine.archive, c.accounts[0]), { enabled: false, retentionDays: 7 });
  assert.deepEqual(archivePolicy(c.engine.archive, c.accounts[1]), { enabled: true, retentionDays: 3 });
  const on = parseConfig({ engine: { archive: { enabled: true } } });
  assert.deepEqual(archivePolicy(on.engine.archive, undefined), { enabled: true, retentionDays: 7 });
  assert.throws(() => parseConfig({ engine: { archive: { retentionDays: 0 } } }), (e: ConfigError) => e.problems.some((p) => p.path === 'engine.archive.retentionDays'));
});

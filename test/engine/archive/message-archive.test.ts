/*
 * The message archive on real files and a real LevelDB store: a message is kept per UTC
 * day and account (a blob hard-linked, an inline body appended to a segment and indexed),
 * read back only through its own account, not kept when the account's archive is off;
 * retention drops whole day folders and their index entries past each account's
 * retentionDays as the injected clock says, and keeps the rest. Segments: many messages
 * at once read back byte for byte; a lost or zeroed tail and an entry pointing at another
 * record read as not archived; a restart writes a new segment and the old one stays
 * readable; messages of the file-per-message layout stay readable.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { ConfigError, parseConfig } from '../../../common/config.js';
import { newQueueId } from '../../../common/durable-queue.js';
import { Store } from '../../../common/store.js';
import { pruneArchive } from '../../../engine/archive/archive-retention.js';
import { archivePolicy, dayOfId, MessageArchive, type ArchivePolicy } from '../../../engine/archive/message-archive.js';
import { tempDir } from '../../helpers/postino.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 20, 23, 59, 0); // late in the day: the day is the id's, in UTC

const stores: Store[] = [];
after(async () => {
  for (const s of stores) await s.close();
});

/** An archive over a fresh folder and store (the hosted node's layout: <data>/hosted/{db,archive}). */
async function archiveWith(policies: Record<string, ArchivePolicy>): Promise<MessageArchive> {
  const dir = tempDir('archive');
  const store = await Store.open(dir);
  stores.push(store);
  return new MessageArchive(path.join(dir, 'archive'), (a) => policies[a] ?? { enabled: true, retentionDays: 7 }, store);
}

/** The index keys of an account, as the store holds them. */
async function indexKeys(archive: MessageArchive, account: string): Promise<string[]> {
  const store = (archive as unknown as { store: Store }).store;
  return store.db.keys({ gte: `ar!${account}!`, lt: `ar!${account}!\uffff` }).all();
}

const segmentsIn = (folder: string): string[] => fs.readdirSync(folder).filter((f) => f.endsWith('.seg'));

test('the day is the one the queue id was made on (UTC); other shapes are not archived', () => {
  assert.equal(dayOfId(newQueueId(T0)), '2026-11-20');
  assert.equal(dayOfId(newQueueId(T0 + 60_000)), '2026-11-21');
  assert.equal(dayOfId('../../etc/passwd'), undefined);
  assert.equal(dayOfId('ZZZZZZZZZZZZZZZZ'), undefined, 'a time far out of range');
});

test('kept per account: inline bytes written, a blob hard-linked; read only through its own account', async () => {
  const archive = await archiveWith({ off: { enabled: false, retentionDays: 7 } });
  const a = newQueueId(T0);
  const inline = Buffer.from('Subject: a\r\n\r\nHello\r\n');
  assert.equal(await archive.keep({ id: a, account: 'shop', read: async () => inline }), true);
  const blob = path.join(tempDir('archive-blob'), 'blob');
  fs.writeFileSync(blob, 'Subject: big\r\n\r\n' + 'x'.repeat(300_000));
  const b = newQueueId(T0);
  assert.equal(await archive.keep({ id: b, account: 'shop', file: blob, read: async () => assert.fail('a blob is linked, not read') }), true);
  assert.equal(await archive.keep({ id: b, account: 'shop', file: blob, read: async () => assert.fail('not read') }), true, 'a second attempt is harmless');
  fs.rmSync(blob); // the queue removes its blob after the rewrap: the archive's link keeps the bytes
  assert.deepEqual(await archive.read('shop', a), inline, 'readable at once, while its batch waits to be written');
  await archive.close();
  assert.deepEqual(await archive.read('shop', a), inline, 'and from its segment');
  assert.equal((await archive.read('shop', b))?.length, 16 + 300_000);
  assert.equal(await archive.read('crm', a), undefined, 'another account never reaches it');
  assert.equal(await archive.read('../shop', a), undefined);
  assert.equal(await archive.keep({ id: newQueueId(T0), account: 'off', read: async () => inline }), false, 'archive off: nothing kept');
  assert.equal(fs.existsSync(path.join(archive.dir, '2026-11-20', 'off')), false);
  assert.deepEqual(await indexKeys(archive, 'off'), [], 'nor indexed');
  assert.equal(segmentsIn(path.join(archive.dir, '2026-11-20', 'shop')).length, 1, 'the inline body went to a segment');
  assert.ok(fs.existsSync(path.join(archive.dir, '2026-11-20', 'shop', `${b}.eml`)), 'the blob is a hard link');
});

test('retention drops whole days past each account\'s retentionDays, as the injected clock says', async () => {
  const archive = await archiveWith({ shop: { enabled: true, retentionDays: 7 }, crm: { enabled: true, retentionDays: 30 } });
  const ids: Record<string, string> = {};
  for (const [name, account, days] of [['shop-old', 'shop', 8], ['shop-new', 'shop', 6], ['crm-old', 'crm', 8]] as const) {
    ids[name] = newQueueId(T0 - days * DAY);
    await archive.keep({ id: ids[name]!, account, read: async () => Buffer.from(name) });
  }
  await archive.close(); // written and indexed
  // T0 is 2026-11-20 23:59: the shop message of 8 days ago (11-12) ended 7 days and 1 minute ago.
  const r = await pruneArchive(archive, T0);
  assert.equal(r.folders, 1);
  assert.equal(await archive.read('shop', ids['shop-old']!), undefined, 'past 7 days: gone');
  assert.equal((await archive.read('shop', ids['shop-new']!))?.toString(), 'shop-new');
  assert.equal((await archive.read('crm', ids['crm-old']!))?.toString(), 'crm-old', 'crm keeps 30 days');
  assert.equal(fs.existsSync(path.join(archive.dir, '2026-11-12', 'shop')), false);
  assert.deepEqual(await indexKeys(archive, 'shop'), [`ar!shop!${ids['shop-new']}`], 'the pruned day\'s index entries went with it');
  assert.equal((await indexKeys(archive, 'crm')).length, 1);
  // A month on, everything went, empty day folders included; a new message of a pruned day's account is kept again.
  await pruneArchive(archive, T0 + 40 * DAY);
  assert.deepEqual(fs.readdirSync(archive.dir), []);
  const again = newQueueId(T0 + 40 * DAY);
  assert.equal(await archive.keep({ id: again, account: 'shop', read: async () => Buffer.from('again') }), true);
  assert.equal((await archive.read('shop', again))?.toString(), 'again');
  await archive.close();
  assert.equal((await archive.read('shop', again))?.toString(), 'again');
  assert.deepEqual(await indexKeys(archive, 'crm'), []);
  assert.deepEqual(await indexKeys(archive, 'shop'), [`ar!shop!${again}`]);
});

test('many messages at once: batched into one segment per day and account, each read back byte for byte', async () => {
  const archive = await archiveWith({});
  const sent = new Map<string, { account: string; body: Buffer }>();
  const keeps: Array<Promise<boolean>> = [];
  for (let i = 0; i < 300; i++) {
    const id = newQueueId(T0);
    const account = i % 3 === 0 ? 'crm' : 'shop';
    // Sizes from a few bytes to 40 KB, bytes of every value: records must not bleed into each other.
    const body = Buffer.alloc(7 + ((i * 7919) % 40_000), i % 256);
    body.write(`Subject: ${i}\r\n`);
    sent.set(id, { account, body });
    keeps.push(archive.keep({ id, account, read: async () => body }));
  }
  assert.ok((await Promise.all(keeps)).every(Boolean));
  await archive.close(); // written and indexed: the reads below come from the segments
  for (const [id, { account, body }] of sent) {
    assert.deepEqual(await archive.read(account, id), body, `message ${id} of ${account}`);
    assert.equal(await archive.read(account === 'shop' ? 'crm' : 'shop', id), undefined, 'never through the other account');
  }
  assert.equal(segmentsIn(path.join(archive.dir, '2026-11-20', 'shop')).length, 1);
  assert.equal(segmentsIn(path.join(archive.dir, '2026-11-20', 'crm')).length, 1);
  assert.equal(archive.stats.records, 300);
  assert.ok(archive.stats.batches <= 30, `written in batches, not one write per message (${archive.stats.batches} batches)`);
});

test('the same id under two accounts: each reads its own record; a third account nothing', async () => {
  const archive = await archiveWith({});
  const id = newQueueId(T0);
  await archive.keep({ id, account: 'shop', read: async () => Buffer.from('shop bytes') });
  await archive.keep({ id, account: 'crm', read: async () => Buffer.from('crm bytes') });
  await archive.close();
  assert.equal((await archive.read('shop', id))?.toString(), 'shop bytes');
  assert.equal((await archive.read('crm', id))?.toString(), 'crm bytes');
  assert.equal(await archive.read('news', id), undefined);
});

test('a lost or zeroed tail, or an index entry pointing at another record, reads as not archived', async () => {
  const archive = await archiveWith({});
  const ids = [newQueueId(T0), newQueueId(T0), newQueueId(T0)];
  for (const [i, id] of ids.entries()) await archive.keep({ id, account: 'shop', read: async () => Buffer.from(`Subject: ${i}\r\n\r\n${'body '.repeat(200)}`) });
  await archive.close();
  const folder = path.join(archive.dir, '2026-11-20', 'shop');
  const [seg] = segmentsIn(folder);
  const file = path.join(folder, seg!);
  const size = fs.statSync(file).size;
  // A crash lost the last 100 bytes while the index kept its entry.
  fs.truncateSync(file, size - 100);
  assert.equal(await archive.read('shop', ids[2]!), undefined, 'a short record is not read');
  assert.match((await archive.read('shop', ids[1]!))?.toString() ?? '', /^Subject: 1/, 'the records before it are whole');
  // Or the file kept its length but the tail's blocks are zeros.
  fs.truncateSync(file, size);
  assert.equal(await archive.read('shop', ids[2]!), undefined, 'zeros fail the CRC');
  // An entry of one id pointing at another's record: never the other message's bytes.
  const store = (archive as unknown as { store: Store }).store;
  const other = store.getNow(`ar!shop!${ids[0]}`)!;
  await store.commit([{ type: 'put', key: `ar!shop!${ids[1]}`, value: other }], { sync: false });
  assert.equal(await archive.read('shop', ids[1]!), undefined);
  // Nor an entry naming a path outside the folder.
  await store.commit([{ type: 'put', key: `ar!shop!${ids[0]}`, value: Buffer.from('../../x.seg:0:10') }], { sync: false });
  assert.equal(await archive.read('shop', ids[0]!), undefined);
});

test('a restart appends to a new segment; the old records and the file-per-message layout stay readable', async () => {
  const first = await archiveWith({});
  const a = newQueueId(T0);
  await first.keep({ id: a, account: 'shop', read: async () => Buffer.from('before the restart') });
  await first.close();
  const store = (first as unknown as { store: Store }).store;
  const second = new MessageArchive(first.dir, first.policy, store);
  const b = newQueueId(T0);
  await second.keep({ id: b, account: 'shop', read: async () => Buffer.from('after the restart') });
  await second.close();
  const folder = path.join(first.dir, '2026-11-20', 'shop');
  assert.equal(segmentsIn(folder).length, 2, 'a segment per run');
  assert.equal((await second.read('shop', a))?.toString(), 'before the restart');
  assert.equal((await second.read('shop', b))?.toString(), 'after the restart');
  // A data folder from before segments: one <id>.eml per message, no index entry.
  const old = newQueueId(T0 - DAY);
  fs.mkdirSync(path.join(first.dir, '2026-11-19', 'shop'), { recursive: true });
  fs.writeFileSync(path.join(first.dir, '2026-11-19', 'shop', `${old}.eml`), 'Subject: old layout\r\n\r\nhi\r\n');
  assert.equal((await second.read('shop', old))?.toString(), 'Subject: old layout\r\n\r\nhi\r\n');
  assert.equal(await second.read('crm', old), undefined);
});

test('a write that fails is logged and its message reads as not archived; the next message is kept', async () => {
  const dir = tempDir('archive');
  const store = await Store.open(dir);
  stores.push(store);
  const lines: string[] = [];
  const archive = new MessageArchive(path.join(dir, 'archive'), () => ({ enabled: true, retentionDays: 7 }), store, { log: pino({}, { write: (l: string) => void lines.push(l) }) });
  // A file where the account's day folder goes: no segment can be made there.
  fs.mkdirSync(path.join(archive.dir, '2026-11-20'), { recursive: true });
  fs.writeFileSync(path.join(archive.dir, '2026-11-20', 'shop'), 'in the way');
  const id = newQueueId(T0);
  assert.equal(await archive.keep({ id, account: 'shop', read: async () => Buffer.from('lost') }), true, 'the rewrap goes on');
  await archive.close();
  await new Promise((r) => setImmediate(r));
  assert.equal(await archive.read('shop', id), undefined);
  assert.ok(lines.some((l) => l.includes('archive-write-failed') && l.includes(id)), 'logged with its queue id');
  fs.rmSync(path.join(archive.dir, '2026-11-20', 'shop'));
  const next = newQueueId(T0);
  await archive.keep({ id: next, account: 'shop', read: async () => Buffer.from('kept') });
  await archive.close();
  assert.equal((await archive.read('shop', next))?.toString(), 'kept');
});

test('the policy: an account\'s own values, else the node\'s; off by default', () => {
  const c = parseConfig({ accounts: [{ id: 'a' }, { id: 'b', archive: { enabled: true, retentionDays: 3 } }] });
  assert.deepEqual(archivePolicy(c.engine.archive, c.accounts[0]), { enabled: false, retentionDays: 7 });
  assert.deepEqual(archivePolicy(c.engine.archive, c.accounts[1]), { enabled: true, retentionDays: 3 });
  const on = parseConfig({ engine: { archive: { enabled: true } } });
  assert.deepEqual(archivePolicy(on.engine.archive, undefined), { enabled: true, retentionDays: 7 });
  assert.throws(() => parseConfig({ engine: { archive: { retentionDays: 0 } } }), (e: ConfigError) => e.problems.some((p) => p.path === 'engine.archive.retentionDays'));
});

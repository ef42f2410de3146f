/*
 * A listener over the node's live accounts (AccountsSnapshot swapped by
 * engine/accounts/account-service.ts, over a real LevelDB): AUTH users, sender
 * domains and quotas changed through the service take effect for the next
 * connection, while a session already open keeps the accounts it connected
 * under; the changes survive a restart of the node (the overlays are read again).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { AccountsSnapshot } from '../../common/accounts-snapshot.js';
import { parseConfig, type Config } from '../../common/config.js';
import { DurableQueue } from '../../common/durable-queue.js';
import type { IntakeMeta } from '../../common/intake-record.js';
import { hashPassword } from '../../common/password-hash.js';
import { Store } from '../../common/store.js';
import { AccountService } from '../../engine/accounts/account-service.js';
import { LevelAccountStore } from '../../engine/accounts/account-store.js';
import { EventLog } from '../../engine/events/event-log.js';
import { startListener, type Listener } from '../../listener/listener.js';
import { tempDir } from '../helpers/postino.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

const FAST = { N: 1024, r: 8, p: 1 };
const NODE = { kind: 'node' } as const;
const plain = (user: string, pw: string): string => `AUTH PLAIN ${Buffer.from(`\0${user}\0${pw}`).toString('base64')}`;

interface Node {
  store: Store;
  events: EventLog;
  service: AccountService;
  listener: Listener;
  close(): Promise<void>;
}

async function startNode(dataDir: string, config: Config): Promise<Node> {
  const log = pino({ level: 'silent' }, new Writable({ write: (_c, _e, cb) => cb() }));
  const store = await Store.open(path.join(dataDir, 'hosted'));
  const queue = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const events = await EventLog.open(store);
  const snapshot = new AccountsSnapshot(config.accounts);
  const service = await AccountService.open({ config, store: new LevelAccountStore(store, events), snapshot, log });
  const listener = await startListener({ config: config.listener, accounts: snapshot, dataDir, queue, log });
  return {
    store,
    events,
    service,
    listener,
    async close() {
      await listener.close();
      await store.close();
    },
  };
}

/** Connected and greeted (the shop account takes plain text: this is about accounts, not TLS). */
async function session(port: number): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port);
  assert.match(await c.reply(), /^220 /);
  assert.match(await c.cmd('EHLO app.test'), /^250/);
  return c;
}

async function sendMessage(c: RawSmtp, from = 'news@shop.example'): Promise<string> {
  const mail = await c.cmd(`MAIL FROM:<${from}>`);
  if (!mail.startsWith('250')) return mail;
  assert.match(await c.cmd('RCPT TO:<ada@example.com>'), /^250 /);
  assert.match(await c.cmd('DATA'), /^354/);
  return c.cmd(`From: ${from}\r\nSubject: hi\r\n\r\nhello\r\n.`);
}

describe('accounts changed under a running listener', () => {
  const dataDir = tempDir('accounts-reload');
  let config: Config;
  let node: Node;

  before(async () => {
    config = parseConfig({
      listener: { port: 0 },
      accounts: [{ id: 'shop', networks: ['127.0.0.1/32'], listener: { requireTls: false, allowInsecureAuth: true, users: [{ username: 'shop-app', passwordHash: await hashPassword('old-secret', FAST) }] } }],
    });
    node = await startNode(dataDir, config);
  });
  after(async () => node.close());

  test('a user added is accepted at the next connection; one removed is refused there, while its open session still sends', async () => {
    const open = await session(node.listener.port);
    assert.match(await open.cmd(plain('shop-app', 'old-secret')), /^235 /);
    await node.service.edit('shop', { part: 'users', action: 'add', user: { username: 'crm-app', passwordHash: await hashPassword('new-secret', FAST) } }, NODE);
    await node.service.edit('shop', { part: 'users', action: 'remove', item: 'shop-app' }, NODE);

    const fresh = await session(node.listener.port);
    assert.match(await fresh.cmd(plain('shop-app', 'old-secret')), /^535 /, 'the removed user');
    assert.match(await fresh.cmd(plain('crm-app', 'new-secret')), /^235 /, 'the added user');
    assert.match(await sendMessage(fresh), /^250 /);
    fresh.close();
    assert.match(await sendMessage(open), /^250 /, 'authenticated before the removal: the session finishes');
    open.close();
    assert.deepEqual(node.service.account('shop').listener.users.map((u) => u.username), ['crm-app']);
  });

  test('sender domains: a new connection is held to the new list, an open one to the list it started with', async () => {
    const open = await session(node.listener.port);
    await node.service.edit('shop', { part: 'senderDomains', action: 'add', item: 'shop.example' }, NODE);
    const fresh = await session(node.listener.port);
    assert.match(await fresh.cmd(plain('crm-app', 'new-secret')), /^235 /);
    assert.match(await sendMessage(fresh, 'x@other.example'), /^550 5\.7\.1 /);
    assert.match(await fresh.cmd('RSET'), /^250/);
    assert.match(await sendMessage(fresh, 'x@shop.example'), /^250 /);
    fresh.close();
    assert.match(await open.cmd(plain('crm-app', 'new-secret')), /^235 /);
    assert.match(await sendMessage(open, 'x@other.example'), /^250 /, 'connected before the change');
    open.close();
  });

  test('quotas set while running apply to the next message; unlimited again lifts them', async () => {
    await node.service.edit('shop', { part: 'quotas', action: 'set', quotas: { messagesPerHour: 1 } }, NODE);
    const c = await session(node.listener.port);
    assert.match(await c.cmd(plain('crm-app', 'new-secret')), /^235 /);
    assert.match(await sendMessage(c, 'a@shop.example'), /^250 /);
    assert.match(await sendMessage(c, 'b@shop.example'), /^452 4\.5\.3 /);
    c.close();
    await node.service.edit('shop', { part: 'quotas', action: 'set', quotas: { messagesPerHour: 0 } }, NODE);
    const d = await session(node.listener.port);
    assert.match(await d.cmd(plain('crm-app', 'new-secret')), /^235 /);
    assert.match(await sendMessage(d, 'c@shop.example'), /^250 /);
    d.close();
  });

  test('adding what is there already changes nothing and writes no event; an invalid value is refused with its key path', async () => {
    const before = node.events.watermark;
    const r = await node.service.edit('shop', { part: 'senderDomains', action: 'add', item: 'shop.example' }, NODE);
    assert.equal(r.event, undefined);
    assert.equal(node.events.watermark, before);
    await assert.rejects(node.service.edit('shop', { part: 'senderDomains', action: 'add', item: 'not a domain' }, NODE), /accounts\.0\.listener\.senderDomains\.1: a domain like example\.org/);
    await assert.rejects(node.service.edit('shop', { part: 'networks', action: 'add', item: '127.0.0.1/40' }, NODE), /accounts\.0\.networks\.1: "127\.0\.0\.1\/40" has a prefix length/);
    await assert.rejects(node.service.edit('nobody', { part: 'networks', action: 'add', item: '127.0.0.5/32' }, NODE), /no account "nobody"/);
    assert.equal(node.events.watermark, before);
  });

  test('the changes survive a restart: the overlays are laid over the file again, and the history is kept', async () => {
    const history = await node.service.history('shop', 100);
    await node.close();
    node = await startNode(dataDir, config);
    const a = node.service.account('shop');
    assert.deepEqual(a.listener.users.map((u) => u.username), ['crm-app']);
    assert.deepEqual(a.listener.senderDomains, ['shop.example']);
    assert.equal(a.listener.messagesPerHour, 0);
    assert.deepEqual(await node.service.history('shop', 100), history);
    assert.deepEqual(history.map((e) => `${e.change?.part} ${e.change?.action}`), ['quotas set', 'quotas set', 'senderDomains add', 'users remove', 'users add']);
    assert.ok(JSON.stringify(history).indexOf('scrypt$') === -1, 'no password hash in the audit trail');
    const c = await session(node.listener.port);
    assert.match(await c.cmd(plain('shop-app', 'old-secret')), /^535 /, 'the removed user stays removed');
    assert.match(await c.cmd(plain('crm-app', 'new-secret')), /^235 /);
    c.close();
  });
});

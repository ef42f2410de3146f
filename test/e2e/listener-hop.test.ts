/*
 * The forwarder → listener hop under `postino up`: STARTTLS with the listener's
 * certificate verified against the dev CA (and recorded as tls=true), a
 * forwarder trusting another CA delivers nothing (the listener is down for it,
 * the message held), and an hourly quota of 10
 * makes message 11 a 452 the forwarder defers (keeps and retries).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ensureDevTls } from '../../common/secrets.js';
import { startUp, tempDir, upConfig, type Running } from '../helpers/postino.js';
import { readSink, waitForSink } from '../helpers/sink-reader.js';
import { message, open, send } from '../helpers/smtp-session.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function submit(port: number, n: number, prefix: string): Promise<void> {
  const c = await open(port);
  for (let i = 1; i <= n; i++) assert.match(await send(c, 'shop@example.org', ['ada@example.com'], message(`${prefix}-${i}`)), /^250 /, `the forwarder accepts ${prefix}-${i}`);
  c.close();
}

function events(up: Running, event: string): Array<Record<string, unknown>> {
  return up.lines.filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function waitFor(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test('the forwarder relays over verified STARTTLS: the listener records tls=true and the account', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('hop-tls');
  const { config, ports } = await upConfig();
  const up = await startUp(dataDir, config);
  try {
    await submit(ports.forwarder, 1, 'tls');
    await waitForSink(path.join(dataDir, 'sink'), (m) => m.length >= 1, 30_000);
    const accepted = events(up, 'accepted').filter((e) => e.component === 'listener');
    assert.equal(accepted.length, 1);
    assert.equal(accepted[0]!.tls, true, 'the listener took it over TLS');
    assert.equal(accepted[0]!.account, 'default');
    assert.equal(accepted[0]!.client, '127.0.0.1');
  } finally {
    await up.stop();
  }
});

test('a forwarder trusting another CA does not deliver: the listener is down for it, the message held, nothing reaches the sink', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('hop-badca');
  const other = await ensureDevTls(tempDir('other-ca'));
  const { config, ports } = await upConfig(() => ({ forwarder: { relay: { caFile: other.caFile } } }));
  const up = await startUp(dataDir, config);
  try {
    await submit(ports.forwarder, 1, 'badca');
    await waitFor('the relay marked down', () => events(up, 'relay-down').length > 0);
    const d = events(up, 'relay-down')[0]!;
    assert.match(String(d.reason), /certificate|self.signed|unable to verify/i, String(d.reason));
    assert.equal(events(up, 'deferred').length, 0, 'a certificate problem is the relay\'s, not a deferral of the message');
    await sleep(1_000);
    assert.equal(readSink(path.join(dataDir, 'sink')).length, 0, 'nothing delivered');
    assert.equal(events(up, 'accepted').filter((e) => e.component === 'listener').length, 0, 'the listener queued nothing');
  } finally {
    await up.stop();
  }
});

test('quota 10/hour: message 11 gets 452 4.5.3 at the listener and the forwarder defers it', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('hop-quota');
  const { config, ports } = await upConfig(() => ({ accounts: [{ id: 'default', networks: ['127.0.0.1/32', '::1/128'], listener: { messagesPerHour: 10 } }] }));
  const up = await startUp(dataDir, config);
  try {
    await submit(ports.forwarder, 11, 'quota');
    await waitForSink(path.join(dataDir, 'sink'), (m) => m.length >= 10, 30_000);
    await waitFor('a 452 deferral', () => events(up, 'deferred').some((e) => String(e.reason).includes('452')));
    await sleep(500);
    assert.equal(readSink(path.join(dataDir, 'sink')).length, 10, 'exactly 10 delivered');
    const status = await fetch(`http://127.0.0.1:${ports.admin}/status`, { headers: { authorization: `Bearer ${(await import('node:fs')).readFileSync(path.join(dataDir, 'secrets', 'admin-token'), 'utf8').trim()}` } });
    const s = (await status.json()) as { queued: number };
    assert.equal(s.queued, 1, 'the 11th is still in the forwarder spool');
  } finally {
    await up.stop();
  }
});

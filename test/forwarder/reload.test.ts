/*
 * `postino forwarder reload` while 200 messages are spooled and relaying (sent
 * while relaying is paused, then resumed, so the timing does not depend on how
 * fast this machine accepts them): the
 * config file gets a new allowNetworks entry, another AUTH user, a new relay URL (another capture
 * sink) and a higher rate cap. The new network is accepted at its next
 * connection, the relay switches for the messages not yet sent while the
 * sessions in flight finish on the old one, and every message arrives exactly
 * once across the two sinks (counted by Message-ID). The forwarder process is
 * the same throughout. A bad file is refused with its key paths (exit 2) and
 * changes nothing; a changed port is named as needing a restart.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { ReloadAnswer } from '../../common/config-reload.js';
import { createLogger } from '../../common/log.js';
import { startSink } from '../../sink/capture-sink.js';
import { until } from '../helpers/fake-clock.js';
import { admin, cliAsync, forwarderConfig, startForwarderProcess } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { readSink } from '../helpers/sink-reader.js';
import { greeting, RawSmtp } from '../helpers/smtp-raw.js';

const COUNT = 200;
/** Slow enough that the reload lands while most of the 200 are still spooled. */
const RATE = 20;
const NEW_APP = '127.0.0.4';

function messageIds(dir: string): string[] {
  return readSink(dir).map((m) => /^Message-ID: *(.+)$/im.exec(m.headers)?.[1]?.trim() ?? '');
}

test('forwarder reload while 200 messages relay: new network accepted, relay switched, none lost, none twice', { timeout: 120_000 }, async (t) => {
  const dataDir = tempDir('fwd-reload');
  const sinkLog = createLogger('sink', 'silent');
  const dirA = path.join(dataDir, 'sink-a');
  const dirB = path.join(dataDir, 'sink-b');
  const sinkA = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules: [] }, dirA, sinkLog);
  const sinkB = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules: [] }, dirB, sinkLog);
  // Passwords of the AUTH users come from the environment (the forwarder process inherits ours).
  process.env.RELOAD_TEST_PW_OLD = 'old-password';
  process.env.RELOAD_TEST_PW_NEW = 'new-password';
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${sinkA.port}`], {
    forwarder: { smtp: { allowNetworks: ['127.0.0.1/32'], auth: { users: [{ username: 'old-app', passwordEnv: 'RELOAD_TEST_PW_OLD' }] } }, relay: { maxMessagesPerSecond: RATE } },
  });
  const file = path.join(dataDir, 'forwarder.json');
  const fwd = await startForwarderProcess(dataDir, config);
  const pid = fwd.child.pid!;
  try {
    // Relaying paused while the 200 are sent (the intake of a loaded machine can be slower than
    // the cap), then resumed: the reload below lands while they are spooled and relaying.
    assert.equal((await admin(dataDir, ports.admin, 'POST', '/pause')).status, 200);
    // Four apps at once (Python's smtplib, one connection per message as most apps do).
    const sent = (await Promise.all(Array.from({ length: 4 }, (_, k) => runPythonSender(['--port', String(ports.smtp), '--count', String(COUNT / 4), '--start', String((k * COUNT) / 4), '--prefix', 'reload']).done))).flat();
    assert.equal(sent.filter((r) => r.ok).length, COUNT, 'every message acknowledged');
    // A bad file first (still paused): refused with its key paths, nothing changes.
    const cfg = config as { forwarder: { smtp: Record<string, unknown>; relay: Record<string, unknown> } };
    fs.writeFileSync(file, JSON.stringify({ ...config, forwarder: { ...cfg.forwarder, smtp: { ...cfg.forwarder.smtp, allowNetworks: ['127.0.0.1/32', 'nope'] } } }));
    const bad = await cliAsync(dataDir, ports.admin, 'reload');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /forwarder\.smtp\.allowNetworks\.1: "nope" is not an IPv4 or IPv6 address/);
    assert.match(await greeting(ports.smtp, NEW_APP), /^554 /);

    const before = await RawSmtp.connect(ports.smtp);
    assert.match(await before.reply(), /^220 /);
    assert.match(await before.cmd('EHLO app.test'), /^250/);
    assert.match(await before.cmd(`AUTH PLAIN ${Buffer.from('\0old-app\0old-password').toString('base64')}`), /^235 /, 'the old user logs in before the reload');
    before.close();

    assert.equal((await admin(dataDir, ports.admin, 'POST', '/resume')).status, 200);
    await until(() => messageIds(dirA).length >= 20, 'relaying under way', 20_000);
    assert.match(await greeting(ports.smtp, NEW_APP), /^554 /, 'the new network is not allowed yet');

    fs.writeFileSync(
      file,
      JSON.stringify({
        ...config,
        forwarder: {
          ...cfg.forwarder,
          smtp: { ...cfg.forwarder.smtp, allowNetworks: ['127.0.0.1/32', `${NEW_APP}/32`], auth: { users: [{ username: 'new-app', passwordEnv: 'RELOAD_TEST_PW_NEW' }] } },
          relay: { ...cfg.forwarder.relay, urls: [`smtp://127.0.0.1:${sinkB.port}`], maxMessagesPerSecond: RATE * 2 },
          hostname: 'renamed.test',
        },
      }),
    );
    // The admin route itself (what `postino forwarder reload` calls, tested above): no process
    // start between resume and reload, so the reload lands while most of the 200 are spooled.
    const r = await admin<ReloadAnswer>(dataDir, ports.admin, 'POST', '/reload');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, {
      ok: true,
      problems: [],
      applied: ['forwarder.relay.maxMessagesPerSecond', 'forwarder.relay.urls', 'forwarder.smtp.allowNetworks', 'forwarder.smtp.auth.users'],
      restartNeeded: ['forwarder.hostname'],
    });
    const queued = Number((await admin(dataDir, ports.admin, 'GET', '/status')).body.queued);
    t.diagnostic(`reloaded with ${queued} of ${COUNT} still spooled`);
    assert.ok(queued >= COUNT / 4, `most messages were still spooled at the reload (${queued})`);

    // The new network: its next connection is accepted and its message relayed.
    await until(async () => (await greeting(ports.smtp, NEW_APP)).startsWith('220'), 'new network accepted', 1_000);
    const c = await RawSmtp.connect(ports.smtp, '127.0.0.1', NEW_APP);
    assert.match(await c.reply(), /^220 /);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    // The AUTH users of the new file: the old one is refused, the new one logs in.
    assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0old-app\0old-password').toString('base64')}`), /^535 /);
    assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0new-app\0new-password').toString('base64')}`), /^235 /);
    assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<ada@example.com>'), /^250 /);
    assert.match(await c.cmd('DATA'), /^354/);
    assert.match(await c.cmd('From: shop@example.org\r\nMessage-ID: <new-network@test.postino>\r\nSubject: new\r\n\r\nhello\r\n.'), /^250 /);
    c.close();

    const want = new Set([...sent.map((s) => `<${s.testId}@test.postino>`), '<new-network@test.postino>']);
    await until(() => new Set([...messageIds(dirA), ...messageIds(dirB)]).size >= want.size, 'all relayed', 60_000);
    const all = [...messageIds(dirA), ...messageIds(dirB)];
    assert.equal(all.length, want.size, 'none twice');
    assert.deepEqual(new Set(all), want, 'none lost');
    const b = messageIds(dirB).length;
    t.diagnostic(`relayed: ${messageIds(dirA).length} by the old relay, ${b} by the new one`);
    // Those spooled after the reload went to the new relay; `queued` counts the few in flight on the old one too.
    assert.ok(b >= queued - 16, `the messages spooled after the reload went to the new relay (${b} of ${queued})`);
    assert.ok(messageIds(dirB).includes('<new-network@test.postino>'));
    assert.equal(fwd.child.pid, pid);
    assert.equal(fwd.child.exitCode, null, 'the forwarder was not restarted');
  } finally {
    await fwd.stop();
    await sinkA.close();
    await sinkB.close();
  }
});

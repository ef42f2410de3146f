/*
 * SMTPUTF8 across the hop: an app's UTF-8 addresses (MAIL … SMTPUTF8) are
 * relayed to the listener, which now refuses UTF-8 without SMTPUTF8 (553 5.6.7):
 * the forwarder's client says SMTPUTF8 itself, so the message arrives.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { forwarderConfig, sleep, startForwarderProcess } from '../helpers/forwarder.js';
import { startTestListener } from '../helpers/listener.js';
import { tempDir } from '../helpers/postino.js';
import { open } from '../helpers/smtp-session.js';

test('UTF-8 sender and recipient with SMTPUTF8: relayed to the listener and queued there', { timeout: 30_000 }, async () => {
  const listener = await startTestListener({ accounts: [{ id: 'acme', networks: ['127.0.0.1/32'], listener: { requireTls: false } }] });
  const dataDir = tempDir('fwd-utf8');
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${listener.port}`], { forwarder: { relay: { caFile: listener.caFile, serverName: 'localhost' } } });
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const c = await open(ports.smtp);
    try {
      assert.match(await c.cmd('MAIL FROM:<pelé@example.org> SMTPUTF8'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<josé@exämple.org>'), /^250 /);
      assert.match(await c.cmd('DATA'), /^354 /);
      c.write('From: pelé@example.org\r\nTo: josé@exämple.org\r\nSubject: utf8\r\n\r\nOlá.\r\n.\r\n');
      assert.match(await c.reply(), /^250 /);
    } finally {
      c.close();
    }
    const until = Date.now() + 15_000;
    let msgs = await listener.messages();
    while (msgs.length === 0 && Date.now() < until) {
      await sleep(100);
      msgs = await listener.messages();
    }
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0]!.meta.envelope.mailFrom, 'pelé@example.org');
    assert.deepEqual(msgs[0]!.meta.envelope.rcptTo, ['josé@exämple.org']);
  } finally {
    await fwd.stop();
    await listener.close();
  }
});

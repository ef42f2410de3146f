/*
 * Upstream 5xx for one recipient of three: the other two are relayed, and an
 * RFC 3464 DSN for the third reaches the sender through the same relay, sent
 * with the null sender. The upstream is a small smtp-server in the test that
 * refuses one RCPT with 550 5.1.1, as a hosted listener would for a bad address.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { wantsFailureNotice } from '../../common/dsn.js';
import { admin, forwarderConfig, sleep, startForwarderProcess } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { open } from '../helpers/smtp-session.js';

interface Got {
  from: string;
  to: string[];
  raw: Buffer;
}

async function upstream(...refuse: string[]): Promise<{ port: number; got: Got[]; close(): Promise<void> }> {
  const got: Got[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onRcptTo(address, _session, cb) {
      if (refuse.includes(address.address)) return cb(Object.assign(new Error(`5.1.1 <${address.address}>: Recipient address rejected: User unknown`), { responseCode: 550 }));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        got.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks) });
        cb(null, 'Ok');
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.server.address() as { port: number }).port;
  return { port, got, close: () => new Promise<void>((r) => server.close(() => r())) };
}

test('5xx for one recipient of three: two relayed, a DSN for the third reaches the sender', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('dsn');
  const up = await upstream('customer2@example.com');
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${up.port}`]);
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const sent = await runPythonSender(['--port', String(ports.smtp), '--count', '1', '--rcpt', '3', '--prefix', 'dsn']).done;
    assert.ok(sent[0]!.ok, 'the forwarder accepted all three recipients');
    const until = Date.now() + 20_000;
    while (up.got.length < 2 && Date.now() < until) await sleep(100);
    await sleep(1_500); // nothing more may arrive (no DSN for the DSN, no second copy)
    assert.equal(up.got.length, 2, 'the message and one DSN');

    const original = up.got.find((g) => g.from === 'shop@example.org')!;
    assert.deepEqual(original.to, ['customer0@example.com', 'customer1@example.com'], 'the two good recipients got the message');
    assert.match(original.raw.toString(), /^X-Postino-Spool-Id: [0-9A-Z]+\r\n/, 'the forwarder stamps its spool id first');

    const dsn = up.got.find((g) => g.from === '')!;
    assert.ok(dsn, 'the DSN is sent with MAIL FROM:<>');
    assert.deepEqual(dsn.to, ['shop@example.org'], 'to the original sender');
    const parsed = await simpleParser(dsn.raw);
    assert.match(String(parsed.headers.get('content-type') && (parsed.headers.get('content-type') as { value: string }).value), /^multipart\/report$/);
    assert.match(dsn.raw.toString(), /report-type=delivery-status/);
    assert.equal(parsed.headers.get('auto-submitted'), 'auto-replied');
    const text = dsn.raw.toString();
    assert.match(text, /^Content-Type: message\/delivery-status/m);
    assert.match(text, /^Reporting-MTA: dns; forwarder\.test\r$/m);
    assert.match(text, /^Final-Recipient: rfc822; customer2@example\.com\r\nAction: failed\r\nStatus: 5\.1\.1\r$/m);
    assert.match(text, /^Diagnostic-Code: smtp; 550 5\.1\.1 <customer2@example\.com>: Recipient address rejected/m);
    assert.doesNotMatch(text, /Final-Recipient: rfc822; customer[01]@/, 'only the refused recipient is reported');
    assert.match(text, /^Content-Type: text\/rfc822-headers/m);
    assert.match(text, /^Message-ID: <dsn-0@test\.postino>\r$/m, 'the original headers are quoted');

    const st = await admin(dataDir, ports.admin, 'GET', '/status');
    assert.equal(st.body.failed, 1, 'one recipient failed');
    assert.equal(st.body.queued, 0, 'nothing left in the spool');
    const metrics = await admin<string>(dataDir, ports.admin, 'GET', '/metrics');
    assert.match(metrics.body, /^postino_forwarder_dsn_total 1$/m);
  } finally {
    await fwd.stop();
    await up.close();
  }
});

test('every recipient refused: nothing relayed, one DSN listing them all', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('dsn-all');
  const up = await upstream('customer0@example.com', 'customer1@example.com');
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${up.port}`]);
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    assert.ok((await runPythonSender(['--port', String(ports.smtp), '--count', '1', '--rcpt', '2', '--prefix', 'all']).done)[0]!.ok);
    const until = Date.now() + 20_000;
    while (up.got.length < 1 && Date.now() < until) await sleep(100);
    await sleep(1_500);
    assert.equal(up.got.length, 1, 'only the DSN');
    assert.equal(up.got[0]!.from, '');
    const text = up.got[0]!.raw.toString();
    assert.match(text, /^Final-Recipient: rfc822; customer0@example\.com\r$/m);
    assert.match(text, /^Final-Recipient: rfc822; customer1@example\.com\r$/m);
    const st = await admin(dataDir, ports.admin, 'GET', '/status');
    assert.equal(st.body.failed, 2);
    assert.equal(st.body.delivered, 1, 'only the DSN counts as relayed');
  } finally {
    await fwd.stop();
    await up.close();
  }
});

test("the sender's DSN parameters: NOTIFY=NEVER not reported, SUCCESS gets a relayed notice, ORCPT and ENVID echoed, RET=FULL returns the message", { timeout: 60_000 }, async () => {
  const dataDir = tempDir('dsn-params');
  const up = await upstream('never@example.com', 'failure@example.com');
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${up.port}`]);
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const c = await open(ports.smtp);
    try {
      assert.match(await c.cmd('EHLO app.test'), /^250[ -]DSN/m, 'the forwarder offers DSN');
      assert.match(await c.cmd('MAIL FROM:<shop@example.org> RET=FULL ENVID=order+2B42'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<never@example.com> NOTIFY=NEVER'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<failure@example.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;alias@example.com'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<ok@example.com> NOTIFY=SUCCESS'), /^250 /);
      assert.match(await c.cmd('DATA'), /^354 /);
      c.write('From: shop@example.org\r\nSubject: params\r\nMessage-ID: <params@test.postino>\r\n\r\nThe whole body comes back.\r\n.\r\n');
      assert.match(await c.reply(), /^250 /);
    } finally {
      c.close();
    }
    const until = Date.now() + 20_000;
    while (up.got.length < 3 && Date.now() < until) await sleep(100);
    await sleep(1_000);
    assert.equal(up.got.length, 3, 'the message (to ok@), the failure DSN and the relayed notice');
    const dsns = up.got.filter((g) => g.from === '').map((g) => g.raw.toString());
    const relayed = dsns.find((t) => /^Action: relayed\r$/m.test(t))!;
    assert.match(relayed, /^Final-Recipient: rfc822; ok@example\.com\r\nAction: relayed\r\nStatus: 2\.0\.0\r$/m, 'NOTIFY=SUCCESS: a relayed notice');
    assert.match(relayed, /^Subject: Successful Mail Delivery Report\r$/m);
    assert.doesNotMatch(relayed, /failure@example\.com/);
    const text = dsns.find((t) => /^Action: failed\r$/m.test(t))!;
    assert.doesNotMatch(text, /never@example\.com/, 'NOTIFY=NEVER: not reported');
    assert.doesNotMatch(text, /ok@example\.com/);
    assert.match(text, /^Original-Envelope-Id: order\+42\r$/m);
    assert.match(text, /^Original-Recipient: rfc822; alias@example\.com\r\nFinal-Recipient: rfc822; failure@example\.com\r\nAction: failed\r$/m);
    assert.match(text, /^Content-Type: message\/rfc822/m);
    assert.match(text, /The whole body comes back\./, 'RET=FULL');
  } finally {
    await fwd.stop();
    await up.close();
  }
});

test('wantsFailureNotice: no NOTIFY or one with FAILURE reports; NEVER or SUCCESS/DELAY alone does not', () => {
  const dsn = { rcpt: { a: { notify: ['NEVER'] }, b: { notify: ['SUCCESS', 'DELAY'] }, c: { notify: ['FAILURE'] } } };
  assert.deepEqual(['a', 'b', 'c', 'd'].map((r) => wantsFailureNotice(dsn, r)), [false, false, true, true]);
  assert.equal(wantsFailureNotice(undefined, 'x'), true);
});

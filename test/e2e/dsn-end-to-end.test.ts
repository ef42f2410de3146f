/*
 * RFC 3461 parameters end to end through `postino up` (the built CLI): an
 * application gives NOTIFY/ORCPT/RET/ENVID to the forwarder, the forwarder
 * passes them on to the listener (which offers DSN), the engine carries them
 * into each copy, and the DSNs (RFC 3464) reach the original sender through
 * the normal delivery queue with MAIL FROM:<>:
 *   gone@     NOTIFY=FAILURE + ORCPT, sink answers 550 5.1.1 → one `failed` DSN
 *   ok@       NOTIFY=SUCCESS, delivered → one `relayed` DSN (the engine's; the
 *             forwarder sends none of its own since the listener took DSN)
 *   slow@     NOTIFY=DELAY,FAILURE, sink answers 451 → one `delayed` DSN, only once
 *   never@    NOTIFY=NEVER, 550 → none
 *   quiet@    no NOTIFY, delivered → none (no NOTIFY = FAILURE,DELAY)
 * RET=FULL returns the message whole; a client talking to the listener
 * directly without DSN parameters gets no DSN; bad parameters get 501 (555 unknown ones).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { until } from '../helpers/fake-clock.js';
import { startUp, tempDir, upConfig } from '../helpers/postino.js';
import { readSink, type SinkMessage } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';
import fs from 'node:fs';

/** One transaction over a raw socket: the parameters are ours to write. */
async function send(port: number, mail: string, rcpts: string[], body: string, tls = false): Promise<string[]> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    let ehlo = await c.cmd('EHLO app.test');
    if (tls) {
      // The listener's default account takes mail only after STARTTLS (the dev certificate).
      assert.match(await c.cmd('STARTTLS'), /^220 /);
      await c.startTls({ rejectUnauthorized: false });
      ehlo = await c.cmd('EHLO app.test');
    }
    const replies = [ehlo, await c.cmd(`MAIL FROM:${mail}`)];
    for (const r of rcpts) replies.push(await c.cmd(`RCPT TO:${r}`));
    replies.push(await c.cmd('DATA'));
    replies.push(await c.cmd(`${body.replace(/\n/g, '\r\n')}\r\n.`));
    await c.cmd('QUIT');
    return replies;
  } finally {
    c.close();
  }
}

/** The listener checks RFC 3461 syntax: 501 for a bad NOTIFY, NEVER with others, a bad ORCPT, an ENVID over 100 characters. */
async function syntaxChecks(port: number): Promise<void> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    await c.cmd('EHLO app.test');
    assert.match(await c.cmd('STARTTLS'), /^220 /);
    await c.startTls({ rejectUnauthorized: false });
    assert.match(await c.cmd('EHLO app.test'), /^250-DSN$/m);
    assert.match(await c.cmd(`MAIL FROM:<a@example.org> ENVID=${'x'.repeat(101)}`), /^501 /);
    assert.match(await c.cmd('MAIL FROM:<a@example.org> RET=SOME'), /^501 /);
    assert.match(await c.cmd('MAIL FROM:<a@example.org> RET=FULL ENVID=abc'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<b@example.org> NOTIFY=SOMETIMES'), /^501 /);
    assert.match(await c.cmd('RCPT TO:<b@example.org> NOTIFY=NEVER,FAILURE'), /^501 /);
    assert.match(await c.cmd('RCPT TO:<b@example.org> ORCPT=nosemicolon'), /^501 /);
    assert.match(await c.cmd('RCPT TO:<b@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b@example.org'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<c@example.org> FOO=BAR'), /^555 5\.5\.4 /);
  } finally {
    c.close();
  }
}

const eml = (dir: string, m: SinkMessage): string => fs.readFileSync(path.join(dir, `${m.id}.eml`), 'utf8');

test('NOTIFY/ORCPT/RET/ENVID go forwarder → listener → engine, and the sender gets failed, relayed and delayed DSNs as asked, once each', { timeout: 90_000 }, async () => {
  const dataDir = tempDir('dsn-e2e');
  const { config, ports } = await upConfig(() => ({
    sink: {
      rules: [
        { recipient: 'gone@example.com', reply: '550 5.1.1 No such user' },
        { recipient: 'never@example.com', reply: '550 5.1.1 No such user' },
        { recipient: '@gone.test', reply: '550 5.1.1 No such user' },
        { recipient: 'slow@example.com', reply: '451 4.2.0 Mailbox busy' },
      ],
    },
    delivery: { retryScheduleSeconds: [0.5] },
    engine: { dsnDelayWarningSeconds: 1 },
  }));
  const up = await startUp(dataDir, config);
  const sinkDir = path.join(dataDir, 'sink');
  const dsnsTo = (who: string): SinkMessage[] => readSink(sinkDir).filter((m) => m.mailFrom === '' && m.rcptTo.includes(who));
  try {
    const r = await send(
      ports.forwarder,
      '<shop@example.org> RET=HDRS ENVID=order+2B42',
      ['<gone@example.com> NOTIFY=FAILURE ORCPT=rfc822;gone@example.com', '<ok@example.com> NOTIFY=SUCCESS', '<slow@example.com> NOTIFY=DELAY,FAILURE', '<never@example.com> NOTIFY=NEVER', '<quiet@example.com>'],
      'From: shop@example.org\nTo: customers@example.org\nSubject: order 42\nMessage-ID: <order-42@example.org>\n\nhello',
    );
    assert.match(r[0]!, /^250-DSN$/m, 'the forwarder offers DSN');
    assert.ok(r.slice(1).every((x) => /^(250|354)/.test(x)), r.join('\n'));

    // RET=FULL to a refused domain, and a direct client without DSN parameters (to the listener itself).
    await send(ports.forwarder, '<full@example.org> RET=FULL', ['<a@gone.test> NOTIFY=FAILURE'], 'From: full@example.org\nSubject: full return\nMessage-ID: <full@example.org>\n\nthe whole body comes back');
    const direct = await send(ports.listener, '<direct@example.org>', ['<b@gone.test>'], 'From: direct@example.org\nSubject: direct\n\nno DSN please', true);
    assert.match(direct[0]!, /^250-DSN$/m, 'the listener offers DSN');

    await syntaxChecks(ports.listener);

    await until(() => dsnsTo('shop@example.org').length >= 3 && dsnsTo('full@example.org').length >= 1, 'three DSNs to shop@, one to full@', 30_000).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${up.lines.filter((l) => /dsn|"level":[56]0|bounced|deferred/.test(l)).slice(-30).join('\n')}`);
    });
    // Retries of slow@ go on every 0.5 s: no second delay notice, no notice for never@/quiet@, none for the direct client.
    await new Promise((res) => setTimeout(res, 2_500));
    const dsns = dsnsTo('shop@example.org').map((m) => eml(sinkDir, m));
    assert.equal(dsns.length, 3, dsns.map((d) => /^Action: .*$/m.exec(d)?.[0]).join(', '));
    assert.equal(dsnsTo('direct@example.org').length, 0, 'a direct client that gave no DSN parameters gets events, not DSNs');
    const sink = readSink(sinkDir);
    assert.ok(sink.some((m) => m.rcptTo.includes('ok@example.com')) && sink.some((m) => m.rcptTo.includes('quiet@example.com')), 'ok@ and quiet@ delivered');

    const failed = dsns.find((d) => /^Action: failed\r$/m.test(d))!;
    assert.ok(failed, 'a failed DSN');
    assert.match(failed, /^Content-Type: multipart\/report; report-type=delivery-status/m);
    assert.match(failed, /^Original-Envelope-Id: order\+42\r$/m, 'ENVID, xtext-decoded, comes back');
    assert.match(failed, /^Reporting-MTA: dns; postino\.localhost\r$/m, 'reported by the engine');
    assert.match(failed, /^Original-Recipient: rfc822; gone@example\.com\r\nFinal-Recipient: rfc822; gone@example\.com\r\nAction: failed\r\nStatus: 5\.1\.1\r$/m);
    assert.match(failed, /^Diagnostic-Code: smtp; 550 5\.1\.1 No such user/m);
    assert.match(failed, /^Content-Type: text\/rfc822-headers/m, 'RET=HDRS: headers only');
    assert.match(failed, /^Subject: order 42\r$/m);
    assert.doesNotMatch(failed, /never@example\.com/, 'NOTIFY=NEVER is not reported');

    const relayed = dsns.find((d) => /^Action: relayed\r$/m.test(d))!;
    assert.ok(relayed, 'a relayed DSN for NOTIFY=SUCCESS');
    assert.match(relayed, /^Final-Recipient: rfc822; ok@example\.com\r\nAction: relayed\r\nStatus: 2\.0\.0\r$/m);
    assert.match(relayed, /^Reporting-MTA: dns; postino\.localhost\r$/m, 'from the engine, not the forwarder');

    const delayed = dsns.find((d) => /^Action: delayed\r$/m.test(d))!;
    assert.ok(delayed, 'a delayed DSN for NOTIFY=DELAY');
    assert.match(delayed, /^Final-Recipient: rfc822; slow@example\.com\r\nAction: delayed\r\nStatus: 4\.2\.0\r$/m);
    assert.match(delayed, /THIS IS A WARNING ONLY/);

    const full = eml(sinkDir, dsnsTo('full@example.org')[0]!);
    assert.match(full, /^Content-Type: message\/rfc822/m, 'RET=FULL: the message comes back whole');
    assert.match(full, /the whole body comes back/);
  } finally {
    await up.stop();
  }
});

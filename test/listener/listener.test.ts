/*
 * The hosted listener's policy, on the wire (raw sockets, real LevelDB intake):
 * allowlist, STARTTLS, AUTH, sender domains, recipient limit, strict DATA
 * (smuggling, long lines), size, error budget, session limit, quotas, PROXY.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashPassword } from '../../common/password-hash.js';
import { V2_SIGNATURE } from '../../common/proxy-v2.js';
import { startTestListener, type TestListener } from '../helpers/listener.js';
import { tempDir } from '../helpers/postino.js';
import { RawSmtp } from '../helpers/smtp-raw.js';
import { message, open, send } from '../helpers/smtp-session.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('allowlist (accounts[].networks)', () => {
  let v4: TestListener;
  let v6: TestListener;
  before(async () => {
    v4 = await startTestListener({});
    v6 = await startTestListener({ listener: { host: '::1' } }, { dataDir: tempDir('listener-v6') });
  });
  after(async () => {
    await v4.close();
    await v6.close();
  });

  test('127.0.0.2 (in no account) gets 554 5.7.1 at connect and is closed', async () => {
    const c = await RawSmtp.connect(v4.port, '127.0.0.1', '127.0.0.2');
    assert.match(await c.reply(), /^554 5\.7\.1 /);
    for (let i = 0; i < 50 && !c.closed; i++) await sleep(20);
    assert.ok(c.closed, 'the connection is closed by the listener');
    assert.ok(v4.logs.some((l) => l.event === 'refused' && l.client === '127.0.0.2'));
  });

  test('127.0.0.1 and ::1 (the default account) get their mail accepted over STARTTLS', async () => {
    for (const [l, host] of [[v4, '127.0.0.1'], [v6, '::1']] as const) {
      const c = await open(l.port, { host, tls: l.ca });
      assert.match(await send(c, 'shop@example.org', ['ada@example.com'], message(`via ${host}`)), /^250 2\.0\.0 Ok: queued as /);
      c.close();
      const [m] = await l.messages();
      assert.equal(m!.meta.account, 'default');
      assert.equal(m!.meta.envelope.clientAddress, host);
      assert.equal(m!.meta.envelope.tls, true, 'TLS state recorded');
    }
  });
});

describe('STARTTLS', () => {
  let l: TestListener;
  before(async () => (l = await startTestListener({})));
  after(() => l.close());

  test('requireTls (default): MAIL before STARTTLS gets 530 5.7.0', async () => {
    const c = await open(l.port);
    assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^530 5\.7\.0 /);
    c.close();
  });

  test('STARTTLS injection: "STARTTLS\\r\\nRSET\\r\\n" in one write, the RSET is never answered in TLS', async () => {
    const c = await open(l.port);
    c.write('STARTTLS\r\nRSET\r\n');
    assert.match(await c.reply(), /^220 /);
    const clear = await c.startTls({ ca: l.ca });
    assert.equal(clear, '', 'nothing but the 220 in clear');
    await sleep(300);
    c.write('NOOP\r\n');
    assert.match(await c.reply(), /^250 /, 'the first reply in TLS is the NOOP');
    await assert.rejects(c.reply(300), /no reply within/, 'and nothing else follows');
    c.close();
  });

  test('TLS below 1.2 is refused', async () => {
    const c = await open(l.port);
    assert.match(await c.cmd('STARTTLS'), /^220 /);
    await assert.rejects(c.startTls({ ca: l.ca, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }));
    c.close();
  });
});

describe('strict DATA', () => {
  let l: TestListener;
  before(async () => (l = await startTestListener({ accounts: [{ id: 'acme', networks: ['127.0.0.1/32'], listener: { requireTls: false } }] })));
  after(() => l.close());

  const variants: Array<[string, string, string]> = [
    ['\\n.\\n', '\n.\n', '\n'],
    ['\\r.\\r', '\r.\r', '\r'],
    ['\\r\\n.\\n', '\r\n.\n', '\r\n'],
    ['\\n.\\r\\n', '\n.\r\n', '\r\n'],
  ];
  for (const [name, eod, nl] of variants) {
    test(`smuggling with ${name}: 550 5.6.0, no second message, the session stays usable`, async () => {
      const before = (await l.messages()).length;
      const c = await open(l.port);
      const smuggled = `MAIL FROM:<x@evil.test>${nl}RCPT TO:<y@victim.test>${nl}DATA${nl}Subject: smuggled${nl}${nl}evil`;
      assert.match(await send(c, 'shop@example.org', ['ada@example.com'], message('carrier') + eod + smuggled + eod), /^550 5\.6\.0 /);
      assert.match(await send(c, 'shop@example.org', ['ada@example.com'], message('clean')), /^250 /);
      await assert.rejects(c.reply(300), /no reply within/, 'no reply to a smuggled command');
      c.close();
      const all = await l.messages();
      assert.equal(all.length, before + 1, 'only the clean message was queued');
      assert.ok(all.every((m) => m.meta.envelope.mailFrom !== 'x@evil.test' && !m.body.includes('smuggled')));
    });
  }

  test('a line of 998 octets passes, 999 gets 550', async () => {
    const c = await open(l.port);
    assert.match(await send(c, 'shop@example.org', ['ada@example.com'], message('998', 'x'.repeat(998))), /^250 /);
    assert.match(await send(c, 'shop@example.org', ['ada@example.com'], message('999', 'x'.repeat(999))), /^550 5\.6\.0 /);
    c.close();
  });

  test('more than maxErrors (10) syntax errors: 421 and close', async () => {
    const c = await open(l.port);
    for (let i = 0; i < 10; i++) assert.match(await c.cmd('MAIL FROM:<<bad>>'), /^50\d /);
    c.write('BOGUS\r\n');
    const r = await c.reply();
    assert.match(r, /^50\d /);
    assert.match(await c.reply(), /^421 4\.7\.0 /);
    for (let i = 0; i < 50 && !c.closed; i++) await sleep(20);
    assert.ok(c.closed);
  });
});

describe('size', () => {
  let l: TestListener;
  before(async () => (l = await startTestListener({ accounts: [{ id: 'acme', networks: ['127.0.0.1/32'], listener: { requireTls: false } }] })));
  after(() => l.close());

  test('30 MB against the 25 MB limit gets 552 5.3.4; a small message in the same session is accepted', { timeout: 60_000 }, async () => {
    const c = await open(l.port);
    assert.match(await c.cmd('MAIL FROM:<shop@example.org> SIZE=31457280'), /^552 5\.3\.4 /, 'declared size');
    assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<ada@example.com>'), /^250 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    const line = 'y'.repeat(998) + '\r\n';
    const chunk = line.repeat(1024); // ~1 MB
    c.write(message('big') + '\r\n');
    for (let i = 0; i < 30; i++) {
      if (!c.socket.write(chunk)) await new Promise((r) => c.socket.once('drain', r));
    }
    c.write('.\r\n');
    assert.match(await c.reply(30_000), /^552 5\.3\.4 /, 'actual size');
    assert.match(await send(c, 'shop@example.org', ['ada@example.com'], message('small')), /^250 /);
    c.close();
    const all = await l.messages();
    assert.deepEqual(all.map((m) => /Subject: (\w+)/.exec(m.body)![1]), ['small']);
  });
});

describe('account policy', () => {
  let l: TestListener;
  before(async () => {
    l = await startTestListener({
      listener: { maxAuthFailures: 3 },
      accounts: [
        { id: 'shop', networks: ['127.0.0.1/32'], listener: { senderDomains: ['example.org', '*.shop.test'], maxRecipients: 3 } },
        { id: 'crm', networks: ['127.0.0.3/32'], listener: { users: [{ username: 'crm', passwordHash: await hashPassword('s3cret') }] } },
      ],
    });
  });
  after(() => l.close());

  test('MAIL FROM a domain the account may not use gets 550 5.7.1; its own domains pass', async () => {
    const c = await open(l.port, { tls: l.ca });
    assert.match(await c.cmd('MAIL FROM:<x@evil.test>'), /^550 5\.7\.1 /);
    assert.match(await c.cmd('MAIL FROM:<news@mail.shop.test>'), /^250 /);
    assert.match(await c.cmd('RSET'), /^250 /);
    assert.match(await send(c, 'shop@EXAMPLE.org', ['a@example.com'], message('ok')), /^250 /);
    c.close();
  });

  test('RCPT count limit per account: the 4th of 3 gets 452 4.5.3', async () => {
    const c = await open(l.port, { tls: l.ca });
    assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250 /);
    for (let i = 1; i <= 3; i++) assert.match(await c.cmd(`RCPT TO:<r${i}@example.com>`), /^250 /);
    assert.match(await c.cmd('RCPT TO:<r4@example.com>'), /^452 4\.5\.3 /);
    c.close();
  });

  test('AUTH: refused in clear (538), needed before MAIL (530), wrong password 535, right one 235 and recorded', async () => {
    const plain = await open(l.port, { local: '127.0.0.3' });
    assert.doesNotMatch(await plain.cmd('EHLO again.test'), /AUTH/, 'AUTH is not offered before TLS');
    assert.match(await plain.cmd(`AUTH PLAIN ${Buffer.from('\0crm\0s3cret').toString('base64')}`), /^538 /);
    plain.close();

    const c = await open(l.port, { local: '127.0.0.3', tls: l.ca });
    assert.match(await c.cmd('EHLO again.test'), /^250-AUTH PLAIN LOGIN$/m, 'and offered in TLS');
    assert.match(await c.cmd('MAIL FROM:<crm@example.net>'), /^530 5\.7\.0 /);
    assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0crm\0wrong').toString('base64')}`), /^535 5\.7\.8 /);
    assert.match(await c.cmd('AUTH LOGIN'), /^334 /);
    assert.match(await c.cmd(Buffer.from('crm').toString('base64')), /^334 /);
    assert.match(await c.cmd(Buffer.from('s3cret').toString('base64')), /^235 /);
    assert.match(await send(c, 'crm@example.net', ['a@example.com'], message('authed')), /^250 /);
    c.close();
    const m = (await l.messages()).find((x) => x.meta.account === 'crm')!;
    assert.equal(m.meta.envelope.authUser, 'crm');
    assert.equal(m.meta.envelope.clientAddress, '127.0.0.3');
  });

  test('failed AUTH is rate limited per IP: past maxAuthFailures, 454 4.7.0 even with the right password', async () => {
    const c = await open(l.port, { local: '127.0.0.3', tls: l.ca });
    // one failure happened in the previous test; two more reach the limit of 3
    for (let i = 0; i < 2; i++) assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0crm\0nope').toString('base64')}`), /^535 /);
    assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0crm\0s3cret').toString('base64')}`), /^454 4\.7\.0 /);
    c.close();
  });
});

describe('session limits', () => {
  test('the total session time limit ends even a busy session with 421 4.4.2', async () => {
    const l = await startTestListener({ listener: { sessionTimeoutSeconds: 1 } });
    const c = await open(l.port);
    const t0 = Date.now();
    let r = '';
    while (!r.startsWith('421') && Date.now() - t0 < 5_000) {
      r = await c.cmd('NOOP');
      await sleep(100);
    }
    assert.match(r, /^421 4\.4\.2 /);
    assert.ok(Date.now() - t0 < 3_000);
    c.close();
    await l.close();
  });

  test('idle timeout: a silent client gets 421', async () => {
    const l = await startTestListener({ listener: { idleTimeoutSeconds: 0.5 } });
    const c = await open(l.port);
    assert.match(await c.reply(3_000), /^421 /);
    c.close();
    await l.close();
  });
});

describe('quotas', () => {
  test('10/hour: message 11 gets 452 4.5.3, also after a restart; the next hour is open again', async () => {
    let now = Date.parse('2026-11-25T10:00:00Z');
    const accounts = [{ id: 'shop', networks: ['127.0.0.1/32'], listener: { requireTls: false, messagesPerHour: 10, messagesPerDay: 100 } }];
    let l = await startTestListener({ accounts }, { now: () => now });
    let c = await open(l.port);
    for (let i = 1; i <= 10; i++) assert.match(await send(c, 'shop@example.org', ['a@example.com'], message(`q${i}`)), /^250 /, `message ${i}`);
    assert.match(await send(c, 'shop@example.org', ['a@example.com'], message('q11')), /^452 4\.5\.3 /);
    c.close();
    await l.close();

    l = await startTestListener({ accounts }, { now: () => now, dataDir: l.dataDir });
    c = await open(l.port);
    assert.match(await send(c, 'shop@example.org', ['a@example.com'], message('q11')), /^452 4\.5\.3 /, 'the count survived the restart');
    now += 3600_000;
    assert.match(await send(c, 'shop@example.org', ['a@example.com'], message('q11')), /^250 /, 'a new hour');
    assert.deepEqual(l.listener.quotas.usage('shop'), { hour: 1, day: 11 });
    c.close();
    await l.close();
  });
});

describe('PROXY protocol', () => {
  test('behind a balancer the allowlist sees the address in the PROXY header', async () => {
    const l = await startTestListener({ listener: { proxyProtocolFrom: ['127.0.0.1/32'] }, accounts: [{ id: 'lb', networks: ['10.1.2.3/32'], listener: { requireTls: false } }] });
    const bad = await RawSmtp.connect(l.port);
    bad.write('PROXY TCP4 10.9.9.9 127.0.0.1 40000 2587\r\n');
    assert.match(await bad.reply(), /^554 5\.7\.1 Access denied for 10\.9\.9\.9/);
    bad.close();
    const good = await RawSmtp.connect(l.port);
    good.write('PROXY TCP4 10.1.2.3 127.0.0.1 40001 2587\r\n');
    assert.match(await good.reply(), /^220 /);
    assert.match(await good.cmd('EHLO lb.test'), /^250/);
    assert.match(await send(good, 'shop@example.org', ['a@example.com'], message('proxied')), /^250 /);
    good.close();
    const [m] = await l.messages();
    assert.equal(m!.meta.envelope.clientAddress, '10.1.2.3');
    await l.close();
  });

  test('PROXY v2 (binary) is read too, for IPv4 and IPv6 clients', async () => {
    const l = await startTestListener({ listener: { proxyProtocolFrom: ['127.0.0.1/32'] }, accounts: [{ id: 'lb', networks: ['10.1.2.3/32', '2001:db8::7/128'], listener: { requireTls: false } }] });
    const v2 = (src: number[], family: 0x11 | 0x21, port: number): Buffer => {
      const addrLen = family === 0x11 ? 12 : 36;
      const h = Buffer.alloc(16 + addrLen);
      V2_SIGNATURE.copy(h, 0);
      h[12] = 0x21; // version 2, PROXY
      h[13] = family;
      h.writeUInt16BE(addrLen, 14);
      Buffer.from(src).copy(h, 16);
      h.writeUInt16BE(port, 16 + addrLen - 4);
      return h;
    };
    const ip6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    const cases: Array<[Buffer, RegExp]> = [
      [v2([10, 1, 2, 3, 127, 0, 0, 1], 0x11, 40002), /^220 /],
      [v2([10, 9, 9, 9, 127, 0, 0, 1], 0x11, 40003), /^554 5\.7\.1 Access denied for 10\.9\.9\.9/],
      [v2([...ip6, ...ip6], 0x21, 40004), /^220 /],
    ];
    for (const [header, expect] of cases) {
      const c = await RawSmtp.connect(l.port);
      c.write(header);
      assert.match(await c.reply(), expect);
      c.close();
    }
    await l.close();
  });
});

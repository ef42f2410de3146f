/*
 * The whole path with real parts: Python's smtplib → forwarder → (STARTTLS,
 * dev CA verified) listener → engine → capture sink, all started by `postino up`.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ALLOCATOR_ENV } from '../../app/allocator-env.js';
import { V8_HEAP_FLAGS } from '../../app/heap-flags.js';
import { startUp, tempDir, upConfig, type Running, type UpPorts } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { waitForSink } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

let up: Running;
let ports: UpPorts;
let dataDir: string;

before(async () => {
  dataDir = tempDir('e2e');
  const c = await upConfig();
  ports = c.ports;
  up = await startUp(dataDir, c.config);
});

after(async () => {
  const code = await up.stop();
  assert.equal(code, 0, 'postino up exits 0 after SIGTERM');
});

test('200 messages from smtplib arrive in the sink with identical bodies and envelopes', { timeout: 180_000 }, async () => {
  const sent = await runPythonSender(['--port', String(ports.forwarder), '--count', '200', '--specials', '--prefix', 'e2e']).done;
  const failed = sent.filter((r) => !r.ok);
  assert.deepEqual(failed, [], 'every message got 250');
  assert.ok(sent.find((r) => r.i === 1)!.size! > 10 * 1024 * 1024, 'message 1 carries the 10 MB attachment');

  const sink = await waitForSink(path.join(dataDir, 'sink'), (m) => m.length >= 200, 120_000);
  assert.equal(sink.length, 200, 'exactly 200 messages in the sink (no loss, no duplicate)');
  const byId = new Map(sink.map((m) => [m.testId, m]));
  for (const s of sent) {
    const got = byId.get(s.testId);
    assert.ok(got, `${s.testId} is in the sink`);
    assert.equal(got.bodySha, s.bodySha, `${s.testId}: body bytes identical`);
    // postino up turns VERP on: each copy returns to its own signed bounce address.
    assert.match(got.mailFrom, /^bounces\+[0-9a-z]+-[0-9a-z]+-[a-z2-7]+@bounce\.localhost$/);
    assert.deepEqual(got.rcptTo, ['customer0@example.com']);
  }
  const utf8 = byId.get('e2e-2')!;
  assert.match(utf8.headers, /^Subject: =\?utf-8\?/im, 'RFC 2047 subject passes through encoded');
  const first = byId.get('e2e-0')!;
  assert.match(first.headers, /^Received: from postino-forwarder \(\[127\.0\.0\.1\]\)\r\n\tby postino\.localhost \(Postino\) with ESMTPS id/m, 'the engine adds its Received: header');
  assert.equal((first.headers.match(/^Received:/gm) ?? []).length, 1, 'and only that one');
});

test('postino up starts its processes with the allocator settings of app/allocator-env.ts and the heap flag of app/heap-flags.ts', () => {
  // up's children by their parent pid, read from /proc (no `ps`: procps is not a peer .ci/install-peers installs).
  const children: Array<[string, string, string[]]> = [];
  for (const pid of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== up.child.pid) continue;
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const role = /\bcli\.js\0(forwarder|hosted|sink)\0/.exec(cmdline)?.[1];
      if (role) children.push([pid, role, cmdline.split('\0')]);
    } catch {
      // a process that ended while listed
    }
  }
  assert.deepEqual(children.map(([, role]) => role).sort(), ['forwarder', 'hosted', 'sink']);
  for (const [pid, role, argv] of children) {
    const env = new Map(fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    for (const [k, v] of Object.entries(ALLOCATOR_ENV)) assert.equal(env.get(k), v, `${role}: ${k}`);
    // node's own flags: after the executable, before the script.
    const script = argv.findIndex((a) => a.endsWith('cli.js'));
    for (const flag of V8_HEAP_FLAGS) assert.ok(argv.slice(1, script).includes(flag), `${role}: ${flag} in ${argv.join(' ')}`);
  }
});

test('an app that ends lines with bare LF: the forwarder relays CRLF, so the strict listener takes it', { timeout: 60_000 }, async () => {
  const c = await RawSmtp.connect(ports.forwarder);
  await c.reply();
  await c.cmd('EHLO php.test');
  await c.cmd('MAIL FROM:<shop@example.org>');
  await c.cmd('RCPT TO:<ada@example.com>');
  assert.match(await c.cmd('DATA'), /^354/);
  c.write('From: shop@example.org\nTo: ada@example.com\nX-Test-Id: bare-lf\nSubject: bare LF\n\nline one\nline two\r\n.\r\n');
  assert.match(await c.reply(), /^250 /);
  c.close();
  const sink = await waitForSink(path.join(dataDir, 'sink'), (m) => m.some((x) => x.testId === 'bare-lf'), 30_000);
  const got = sink.find((x) => x.testId === 'bare-lf');
  assert.ok(got, 'delivered through the listener');
  assert.match(got.headers, /\r\nSubject: bare LF$/m, 'headers arrive with CRLF line ends');
});

/*
 * The cipher order of our TLS sessions (common/tls-ciphers.ts), on both sides, over real STARTTLS:
 * our intake as the server picks AES-128-GCM whatever order a client offers; our relay client gets
 * it from a server that follows the client's order, and still agrees with a server that allows
 * only AES-256-GCM or only TLS 1.2.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { pino } from 'pino';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { DurableQueue } from '../../common/durable-queue.js';
import { ensureDevTls, type DevTlsPaths } from '../../common/secrets.js';
import { makeTransport, sendVia } from '../../common/smtp-client.js';
import type { Intake } from '../../common/smtp-intake.js';
import { Store } from '../../common/store.js';
import { loopbackIntake, type EnvelopeMeta } from '../helpers/intake.js';
import { freePorts } from '../helpers/ports.js';
import { removeTempDir, tempDir } from '../helpers/postino.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

let dir: string;
let certs: DevTlsPaths;
let store: Store;
let intake: Intake;
const logs: Array<Record<string, unknown>> = [];

before(async () => {
  dir = tempDir('tls-ciphers');
  certs = await ensureDevTls(dir);
  store = await Store.open(`${dir}/store`);
  const queue = await DurableQueue.open<EnvelopeMeta>(store, 'spool', {});
  intake = await loopbackIntake(queue, pino({ level: 'info' }, { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) }), {
    tls: { key: fs.readFileSync(certs.keyFile), cert: fs.readFileSync(certs.certFile) },
  });
});

after(async () => {
  await intake.close();
  await store.close();
  removeTempDir(dir);
});

const transport = (port: number) => makeTransport(`smtp://127.0.0.1:${port}`, { requireTls: true, verifyCertificate: false, maxConnections: 1, messagesPerConnection: 10, timeoutMs: 5_000, clientName: 'tls.test' });

async function sendOne(port: number): Promise<void> {
  const t = transport(port);
  try {
    const r = await sendVia(`smtp://127.0.0.1:${port}`, t, { from: 'a@example.org', to: ['b@example.com'] }, async () => Readable.from([Buffer.from('Subject: t\r\n\r\nhello\r\n')]));
    assert.equal(r.kind, 'sent', r.kind === 'unreachable' ? String(r.error) : '');
  } finally {
    t.close();
  }
}

const queuedCiphers = (): unknown[] => logs.filter((l) => l.event === 'accepted').map((l) => l.cipher);

test('our relay client to our intake: TLS 1.3 with AES-128-GCM, and the intake logs the cipher with the message', async () => {
  logs.length = 0;
  await sendOne(intake.port);
  assert.deepEqual(queuedCiphers(), ['TLS_AES_128_GCM_SHA256']);
});

test('a client that offers AES-256-GCM first (Node\'s default order) gets AES-128-GCM from our intake; one that offers only AES-256-GCM gets that', async () => {
  for (const [opts, cipher] of [
    [{}, 'TLS_AES_128_GCM_SHA256'],
    [{ ciphers: tls.DEFAULT_CIPHERS }, 'TLS_AES_128_GCM_SHA256'],
    [{ ciphers: 'TLS_AES_256_GCM_SHA384' }, 'TLS_AES_256_GCM_SHA384'],
  ] as Array<[tls.ConnectionOptions, string]>) {
    logs.length = 0;
    const c = await RawSmtp.connect(intake.port);
    try {
      assert.match(await c.reply(), /^220/);
      assert.match(await c.cmd('EHLO client.test'), /^250/);
      assert.match(await c.cmd('STARTTLS'), /^220/);
      await c.startTls({ rejectUnauthorized: false, ...opts });
      assert.match(await c.cmd('EHLO client.test'), /^250/);
      assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^250/);
      assert.match(await c.cmd('RCPT TO:<b@example.com>'), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      c.write('Subject: t\r\n\r\nhello\r\n.\r\n');
      assert.match(await c.reply(), /^250/);
    } finally {
      c.close();
    }
    assert.deepEqual(queuedCiphers(), [cipher]);
  }
});

/** A server that is not ours: smtp-server with the given TLS settings, recording each message's cipher. */
async function otherServer(extra: Partial<SMTPServerOptions>): Promise<{ port: number; ciphers: Array<string | undefined>; close(): Promise<void> }> {
  const ciphers: Array<string | undefined> = [];
  const [port] = await freePorts(1);
  const server = new SMTPServer({
    key: fs.readFileSync(certs.keyFile),
    cert: fs.readFileSync(certs.certFile),
    authOptional: true,
    logger: false,
    ...extra,
    onData(stream, session, cb) {
      stream.resume();
      stream.on('end', () => {
        ciphers.push(session.tlsOptions ? session.tlsOptions.name : undefined);
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { port: port!, ciphers, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

test('our relay client: AES-128-GCM from a server that follows the client\'s order; a server that allows only AES-256-GCM or only TLS 1.2 still gets the mail', async () => {
  for (const [extra, cipher] of [
    [{ honorCipherOrder: false }, 'TLS_AES_128_GCM_SHA256'],
    [{ ciphers: 'TLS_AES_256_GCM_SHA384' }, 'TLS_AES_256_GCM_SHA384'],
    [{ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384' }, 'ECDHE-ECDSA-AES256-GCM-SHA384'],
  ] as Array<[Partial<SMTPServerOptions>, string]>) {
    const s = await otherServer(extra);
    try {
      await sendOne(s.port);
      assert.deepEqual(s.ciphers, [cipher]);
    } finally {
      await s.close();
    }
  }
});

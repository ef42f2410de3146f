/*
 * The reputation brake on a real node (`postino hosted`, a capture sink as the MTA): an account sends 500
 * messages (the default minimum sample), 1% of them draw ARF complaints through the bounce intake (over the
 * 0.3% default pause threshold); the account is paused within the next
 * evaluation with a `paused` event carrying the figures, its mail stops (the
 * sink count stays flat) while the notice to its notification address still
 * goes out, `postino hosted status` names the pause, and `postino hosted
 * resume --account` restarts delivery without the brake pausing again on the
 * complaints it already acted on.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { PostinoEvent } from '../../common/events.js';
import { until } from '../helpers/fake-clock.js';
import { arfComplaint } from '../helpers/feedback.js';
import { sleep, startTestSink } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { freePorts } from '../helpers/ports.js';
import { DashboardClient } from '../helpers/dashboard-client.js';
import { CLI, tempDir } from '../helpers/postino.js';
import { readSink } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

async function sendMany(port: number, n: number, prefix: string): Promise<void> {
  const c = await RawSmtp.connect(port, '127.0.0.1', '127.0.0.2');
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    for (let i = 0; i < n; i++) {
      assert.match(await c.cmd('MAIL FROM:<news@shop.example>'), /^250/);
      assert.match(await c.cmd(`RCPT TO:<${prefix}-${i}@example.com>`), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      assert.match(await c.cmd(`From: news@shop.example\r\nTo: ${prefix}-${i}@example.com\r\nSubject: ${prefix} ${i}\r\n\r\nhello\r\n.`), /^250/);
    }
  } finally {
    c.close();
  }
}

function arf(to: string, ref: string, recipient: string): string {
  return arfComplaint(to, ['From: news@shop.example', `To: ${recipient}`, `X-Message-Ref: ${ref}`, 'Subject: spring']);
}

async function complain(port: number, to: string, report: string): Promise<void> {
  const c = await RawSmtp.connect(port);
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO fbl.example.net'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<feedback@fbl.example.net>'), /^250/);
    assert.match(await c.cmd(`RCPT TO:<${to}>`), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    assert.match(await c.cmd(`${report}\r\n.`), /^250/);
  } finally {
    c.close();
  }
}

test('1% complaints pause the account (event, notice, status), its mail waits, resume sends it', { timeout: 180_000 }, async () => {
  const dataDir = tempDir('brake');
  const { sink, sinkDir } = await startTestSink(dataDir);
  const [bounce] = await freePorts(1);
  const h = await hostedConfig(sink.port, {
    accounts: [
      { id: 'default', networks: ['127.0.0.1/32', '::1/128'] },
      { id: 'shop', networks: ['127.0.0.2/32'], listener: { requireTls: false }, engine: { notify: { addresses: ['it@shop.example.org'] } } },
    ],
    engine: { bounceDomain: 'bounce.postino.test' }, // VERP, so complaints are attributed
    feedback: { port: bounce },
  });
  const ports = { listener: h.listenerPort, http: (h.config.http as { port: number }).port, bounce: bounce! };
  const up = await startHostedProcess(dataDir, h.config);
  const nodeKey = fs.readFileSync(path.join(dataDir, 'secrets', 'api-key'), 'utf8').trim();
  const get = async <T>(route: string): Promise<T> => (await (await fetch(`http://127.0.0.1:${ports.http}${route}`, { headers: { authorization: `Bearer ${nodeKey}` } })).json()) as T;
  const feed = async (type: string): Promise<PostinoEvent[]> => {
    const r = await fetch(`http://127.0.0.1:${ports.http}/api/events?type=${type}&limit=100000`, { headers: { authorization: `Bearer ${nodeKey}` } });
    return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as PostinoEvent);
  };
  const cli = (...args: string[]): string => {
    const r = spawnSync(process.execPath, [CLI, ...args, '--api', `http://127.0.0.1:${ports.http}`], { encoding: 'utf8', env: { ...process.env, POSTINO_DATA: dataDir } });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  const shopMail = (): number => readSink(sinkDir).filter((m) => m.rcptTo.some((r) => r.endsWith('@example.com'))).length;
  try {
    // The brake's defaults: it decides from 500 messages on (events.brake.minMessages), pauses at 0.3%.
    await sendMany(ports.listener, 500, 'spring');
    await until(() => shopMail() >= 500, '500 delivered', 90_000);
    assert.deepEqual((await get<{ paused: unknown[] }>('/api/brake')).paused, [], 'no complaints, no pause');

    // Five complaints (1%), attributed by the VERP token of the delivered copies.
    const copies = readSink(sinkDir).filter((m) => m.rcptTo[0]!.startsWith('spring-')).slice(0, 5);
    for (const m of copies) {
      const ref = m.mailFrom.slice(m.mailFrom.indexOf('+') + 1, m.mailFrom.indexOf('@'));
      await complain(ports.bounce, `fbl@${m.mailFrom.split('@')[1]}`, arf(`fbl@${m.mailFrom.split('@')[1]}`, ref, m.rcptTo[0]!));
    }
    await until(async () => (await feed('complained')).length === 5, 'five complaints recorded', 30_000);
    await until(async () => (await get<{ paused: unknown[] }>('/api/brake')).paused.length === 1, 'the brake pauses the account', 10_000);
    // With storage.postgres the feed is the global one, a moment behind the node's own state.
    await until(async () => (await feed('paused')).length === 1, 'the paused event in the feed', 10_000);
    const [paused] = await feed('paused');
    assert.equal(paused!.account, 'shop');
    assert.equal(paused!.figures!.sent, 500);
    // Evaluated as the statistics fold: the pause comes once the rate crosses 0.3%, which may be
    // before all five complaints are counted (2 of 500 already are 0.4%).
    const rate = paused!.figures!.complaintRate;
    assert.ok(rate >= 0.003 && rate <= 0.01, `complaint rate ${rate}`);
    const pct = `${(rate * 100).toFixed(2).replace('.', '\\.')}%`;
    assert.match(paused!.reason!, new RegExp(`complaint rate ${pct} ≥ 0\\.30%`));
    assert.match(cli('hosted', 'status'), new RegExp(`brake: account shop paused at .*complaint rate ${pct}[\\s\\S]*postino hosted resume --account shop`));
    // The dashboard's overview shows it: the account's row paused, its complaint rate past the limit.
    // The row shows the rate now, not the rate at the pause: once all five complaints are folded it is 5 of 500.
    const dash = await DashboardClient.login(`http://127.0.0.1:${ports.http}`, '', nodeKey);
    const brakeRow = async (): Promise<string> => /<tr data-brake="shop">([\s\S]*?)<\/tr>/.exec((await dash.get('/')).text)?.[1] ?? '';
    await until(async () => (await brakeRow()).includes('<td class="bad">1.00%</td>'), 'the overview shows 1.00% complaints', 10_000);
    assert.match(await brakeRow(), /<strong class="bad">paused<\/strong>/);

    // Its mail waits; the notice to its people does not.
    await sendMany(ports.listener, 20, 'held');
    await until(() => readSink(sinkDir).some((m) => m.rcptTo.includes('it@shop.example.org') && /reputation brake/.test(fs.readFileSync(path.join(sinkDir, `${m.id}.eml`), 'utf8'))), 'the notice arrives', 30_000);
    await until(async () => (await feed('accepted')).length === 520, 'the 20 accepted', 30_000);
    await sleep(3_000);
    assert.equal(shopMail(), 500, 'nothing more of the paused account was delivered');

    assert.match(cli('hosted', 'resume', '--account', 'shop'), /resumed for account shop/);
    await until(() => shopMail() === 520, 'the held 20 delivered after resume', 60_000);
    await until(async () => (await feed('resumed')).length === 1, 'the resumed event in the feed', 10_000);
    const [resumed] = await feed('resumed');
    assert.equal(resumed!.account, 'shop');
    await sleep(2_500);
    assert.deepEqual((await get<{ paused: unknown[] }>('/api/brake')).paused, [], 'not paused again for the complaints it already acted on');
    assert.equal((await feed('paused')).length, 1);
  } finally {
    await up.stop();
    await sink.close();
  }
});

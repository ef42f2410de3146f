/*
 * The DataExporter on a real node (`postino up`, the built CLI) with two
 * accounts and their API keys: mail sent over SMTP by each account, the sink
 * answering 550 to one recipient and 451 once to another, a DSN to the bounce
 * intake (soft bounce) and a one-click unsubscribe; then
 *   - the feed read in pages, with the node SIGKILLed between two pages and
 *     the reader resuming from its last seq: nothing missed, nothing repeated;
 *   - /api/messages/<the queue id of the listener's 250 reply> tells the
 *     message's whole story (accepted, deferred with the remote reply, delivered);
 *   - statistics agree with the feed;
 *   - account isolation on every route: events, events.csv, messages, stats,
 *     stats.csv, webhooks, suppressions (403 when naming the other account,
 *     nothing of it otherwise).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { PostinoEvent } from '../../common/events.js';
import { until } from '../helpers/fake-clock.js';
import { CLI, startUp, tempDir, upConfig } from '../helpers/postino.js';
import { dsn } from '../helpers/feedback.js';
import { readSink, type SinkMessage } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

function newKey(account: string): { token: string; entry: { id: string; hash: string } } {
  const r = spawnSync(process.execPath, [CLI, 'hosted', 'api-key', 'new', account], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { token: /^(pk_\S+)$/m.exec(r.stdout)![1]!, entry: JSON.parse(/^(\{.*\})$/m.exec(r.stdout)![1]!) as { id: string; hash: string } };
}

/** Sends each (to, subject) over one session from `localAddress`; returns the queue ids of the 250 replies. */
async function send(port: number, from: string, localAddress: string, rcpts: string[][], tag: string): Promise<string[]> {
  const c = await RawSmtp.connect(port, '127.0.0.1', localAddress);
  const ids: string[] = [];
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    for (const [i, to] of rcpts.entries()) {
      assert.match(await c.cmd(`MAIL FROM:<${from}>`), /^250/);
      for (const r of to) assert.match(await c.cmd(`RCPT TO:<${r}>`), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      const reply = await c.cmd(`From: ${from}\r\nTo: ${to.join(', ')}\r\nSubject: ${tag} ${i}\r\nMessage-ID: <${tag}-${i}@${from.split('@')[1]}>\r\nX-Postino-Tag: ${tag}\r\nX-Postino-Metadata: order=${i}\r\n\r\nhello\r\n.`);
      const id = /queued as (\S+)/.exec(reply)?.[1];
      assert.ok(id, reply);
      ids.push(id);
    }
  } finally {
    c.close();
  }
  return ids;
}

test('the exporter on a real node: pages across a SIGKILL, message history, stats, and each account key sees only its own', { timeout: 180_000 }, async () => {
  const a = newKey('shop');
  const b = newKey('crm');
  const dataDir = tempDir('events-e2e');
  const { config, ports } = await upConfig(() => ({
    accounts: [
      { id: 'default', networks: ['127.0.0.1/32', '::1/128'] },
      { id: 'shop', networks: ['127.0.0.2/32'], apiKeys: [a.entry], listener: { requireTls: false } },
      { id: 'crm', networks: ['127.0.0.3/32'], apiKeys: [b.entry], listener: { requireTls: false } },
    ],
    sink: {
      rules: [
        { recipient: 'gone@example.com', reply: '550 5.1.1 No such user here' },
        { recipient: 'grey@example.com', reply: '451 4.7.1 Greylisted, try again', times: 1 },
      ],
    },
    delivery: { retryScheduleSeconds: [1] },
  }));
  let up = await startUp(dataDir, config);
  const api = `http://127.0.0.1:${ports.http}`;
  const nodeKey = fs.readFileSync(path.join(dataDir, 'secrets', 'api-key'), 'utf8').trim();
  const call = (key: string, route: string, method = 'GET'): Promise<Response> => fetch(api + route, { method, headers: { authorization: `Bearer ${key}` } });
  const ndjson = async (key: string, route: string): Promise<PostinoEvent[]> => {
    const r = await call(key, route);
    const text = await r.text();
    assert.equal(r.status, 200, text);
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as PostinoEvent);
  };
  try {
    const shopIds = await send(ports.listener, 'news@shop.example', '127.0.0.2', [['ada@example.com', 'grey@example.com'], ['gone@example.com'], ...Array.from({ length: 20 }, (_, i) => [`s${i}@example.net`])], 'spring');
    const crmIds = await send(ports.listener, 'info@crm.example', '127.0.0.3', Array.from({ length: 20 }, (_, i) => [`c${i}@example.org`]), 'crm-news');
    // 43 copies: 42 delivered in the end (grey after one 451), 1 bounced.
    const settled = async (): Promise<boolean> => (await ndjson(nodeKey, '/api/events?type=delivered,bounced&limit=100000')).length >= 43;
    await until(settled, 'all copies settled', 60_000);

    // What comes back, through the real intakes: a soft bounce (DSN to the VERP return path) and a
    // one-click unsubscribe (the delivered List-Unsubscribe URL).
    const delivered = (to: string): SinkMessage => readSink(path.join(dataDir, 'sink')).find((m) => m.rcptTo.includes(to))!;
    const s0 = delivered('s0@example.net');
    const mx = await RawSmtp.connect(ports.bounce);
    assert.match(await mx.reply(), /^220/);
    assert.match(await mx.cmd('EHLO mx.example.net'), /^250/);
    assert.match(await mx.cmd('MAIL FROM:<>'), /^250/);
    assert.match(await mx.cmd(`RCPT TO:<${s0.mailFrom}>`), /^250/);
    assert.match(await mx.cmd('DATA'), /^354/);
    assert.match(await mx.cmd(`${dsn(s0.mailFrom, 's0@example.net', '5.2.2', '552 5.2.2 Mailbox full')}\r\n.`), /^250/);
    mx.close();
    const unsub = /<(http:\/\/[^>]+\/u\/[^>]+)>/.exec(delivered('s1@example.net').headers.replace(/\r\n[ \t]+/g, ' '))?.[1];
    assert.ok(unsub, 'a List-Unsubscribe URL on the delivered copy');
    assert.equal((await fetch(unsub, { method: 'POST', body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status, 200);
    await until(async () => (await ndjson(nodeKey, '/api/events?type=bounced,unsubscribed&limit=1000')).length === 3, 'the soft bounce and the unsubscribe recorded', 30_000);

    // Pages of 10 from after=0, the node SIGKILLed between two pages.
    const seen: PostinoEvent[] = [];
    let after = 0;
    for (let pageNo = 0; ; pageNo++) {
      const p = await ndjson(nodeKey, `/api/events?after=${after}&limit=10`);
      if (!p.length) break;
      seen.push(...p);
      after = p.at(-1)!.seq;
      if (pageNo === 3) {
        up.kill9();
        await up.exited;
        up = await startUp(dataDir, config);
      }
    }
    const whole = await ndjson(nodeKey, '/api/events?limit=100000');
    assert.deepEqual(seen.map((e) => e.seq), whole.map((e) => e.seq), 'every event once, in order, across the kill');
    assert.ok(seen.every((e, i) => i === 0 || e.seq > seen[i - 1]!.seq));

    // One message's whole history, by the queue id of the listener's 250 reply.
    const h = (await (await call(nodeKey, `/api/messages/${shopIds[0]}`)).json()) as { messages: Array<{ account: string; intakeIds: string[]; copies: Array<{ recipient: string; events: PostinoEvent[] }> }> };
    assert.equal(h.messages.length, 1);
    assert.deepEqual(h.messages[0]!.intakeIds, [shopIds[0]]);
    const grey = h.messages[0]!.copies.find((c) => c.recipient === 'grey@example.com')!;
    assert.deepEqual(grey.events.map((e) => e.type), ['accepted', 'deferred', 'delivered']);
    assert.match(grey.events[1]!.smtp!.response, /Greylisted/);
    assert.equal(grey.events[2]!.smtp!.code, 250);
    assert.deepEqual(h.messages[0]!.copies.find((c) => c.recipient === 'ada@example.com')!.events.map((e) => e.type), ['accepted', 'delivered']);
    const gone = (await (await call(a.token, `/api/messages/${encodeURIComponent('<spring-1@shop.example>')}`)).json()) as typeof h;
    const bounced = gone.messages[0]!.copies[0]!.events.at(-1)!;
    assert.equal(bounced.type, 'bounced');
    assert.equal(bounced.bounce!.class, 'hard');
    assert.match(bounced.smtp!.response, /No such user/);

    // Statistics agree with the feed.
    const stats = (await (await call(nodeKey, '/api/stats?groupBy=account')).json()) as { rows: Array<{ key: string; accepted: number; delivered: number; deferred: number; hardBounced: number }> };
    for (const acct of ['shop', 'crm']) {
      const mine = whole.filter((e) => e.account === acct);
      const row = stats.rows.find((r) => r.key === acct)!;
      assert.deepEqual([row.accepted, row.delivered, row.deferred, row.hardBounced], [mine.filter((e) => e.type === 'accepted').length, mine.filter((e) => e.type === 'delivered').length, mine.filter((e) => e.type === 'deferred').length, mine.filter((e) => e.type === 'bounced' && e.bounce?.class === 'hard').length]);
    }
    const byTag = (await (await call(a.token, '/api/stats?groupBy=tag')).json()) as { rows: Array<{ key: string; delivered: number; softBounced: number; unsubscribed: number }> };
    assert.deepEqual(byTag.rows.map((r) => [r.key, r.delivered, r.softBounced, r.unsubscribed]), [['spring', 22, 1, 1]]);
    const s0History = (await (await call(a.token, `/api/messages/${shopIds[2]}`)).json()) as typeof h;
    const s0Events = s0History.messages[0]!.copies[0]!.events;
    assert.deepEqual(s0Events.map((e) => e.type), ['accepted', 'delivered', 'bounced']);
    assert.deepEqual([s0Events[2]!.bounce!.class, s0Events[2]!.bounce!.source, s0Events[2]!.report!.format], ['soft', 'dsn', 'dsn']);
    const s1Events = ((await (await call(a.token, `/api/messages/${shopIds[3]}`)).json()) as typeof h).messages[0]!.copies[0]!.events;
    assert.deepEqual(s1Events.map((e) => [e.type, e.via]), [['accepted', undefined], ['delivered', undefined], ['unsubscribed', 'one-click']]);

    // Isolation, route by route.
    const shopFeed = await ndjson(a.token, '/api/events?limit=100000');
    assert.equal(shopFeed.length, whole.filter((e) => e.account === 'shop').length);
    assert.ok(shopFeed.every((e) => e.account === 'shop'));
    const crmCsv = await (await call(b.token, '/api/events.csv?limit=100000')).text();
    assert.ok(crmCsv.includes('crm-news') && !crmCsv.includes('shop.example'), 'the CSV of crm holds nothing of shop');
    assert.equal((await ndjson(a.token, '/api/events?tag=crm-news')).length, 0);
    for (const route of ['/api/events?account=crm', '/api/events.csv?account=crm', '/api/stats?account=crm', '/api/stats.csv?account=crm', `/api/messages/${crmIds[0]}?account=crm`, '/api/webhooks?account=crm', '/api/suppressions?account=crm']) {
      assert.equal((await call(a.token, route)).status, 403, `shop key: ${route}`);
    }
    assert.equal((await call(a.token, `/api/messages/${crmIds[0]}`)).status, 404, "crm's message is not found with shop's key");
    assert.equal((await call(b.token, `/api/messages/${shopIds[0]}`)).status, 404);
    assert.equal((await call(b.token, `/api/messages/${crmIds[0]}`)).status, 200);
    const crmStats = (await (await call(b.token, '/api/stats?groupBy=sender')).json()) as { rows: Array<{ key: string }> };
    assert.deepEqual(crmStats.rows.map((r) => r.key), ['info@crm.example']);
    assert.ok(!(await (await call(b.token, '/api/stats.csv?groupBy=domain')).text()).includes('example.net'), 'shop recipients\' domains are not in crm stats');
    const sup = (await (await call(b.token, '/api/suppressions')).json()) as { suppressions: Array<{ address: string }> };
    assert.ok(!sup.suppressions.some((s) => s.address === 'gone@example.com'), "shop's hard bounce is not in crm's suppressions");
    const shopSup = (await (await call(a.token, '/api/suppressions')).json()) as { suppressions: Array<{ address: string }> };
    assert.ok(shopSup.suppressions.some((s) => s.address === 'gone@example.com'));
  } finally {
    await up.stop();
  }
});

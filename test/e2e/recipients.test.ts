/*
 * The recipient database on a real node (`postino hosted`, the built CLI, in
 * front of a capture sink; the forwarder is not part of this) through the built CLI
 * and the API: 10,000 rows imported by `postino recipients import`; a message
 * with `Hello {{first_name|friend}}` arrives in the sink with the imported name
 * for a known recipient and "friend" for an unknown one; a field set by PATCH
 * is used by the next message; the CSV export, read by Python's csv module,
 * is the import plus the recipients traffic created; counters follow the
 * deliveries; a bad CSV reports each bad row; account keys stay in their
 * account (403); a deleted recipient leaves the API, the feed shows its
 * pseudonym, and a new message to it is suppressed.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import type { PostinoEvent } from '../../common/events.js';
import { until } from '../helpers/fake-clock.js';
import { startTestSink } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { CLI, newApiKey, tempDir } from '../helpers/postino.js';
import { readSink, type SinkMessage } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

const ROWS = 10_000;

function cli(key: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'recipients', ...args], { env: { ...process.env, POSTINO_API_KEY: key } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

async function send(port: number, localAddress: string, rcpts: string[], testId: string, extraHeader = ''): Promise<void> {
  const c = await RawSmtp.connect(port, '127.0.0.1', localAddress);
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<news@shop.example>'), /^250/);
    for (const r of rcpts) assert.match(await c.cmd(`RCPT TO:<${r}>`), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    const msg = `From: news@shop.example\r\nTo: customers@shop.example\r\nSubject: Hello {{first_name|friend}}\r\nX-Test-Id: ${testId}\r\n${extraHeader}\r\nHello {{first_name|friend}}, from {{city|nowhere}}.\r\n.`;
    assert.match(await c.cmd(msg), /^250/);
  } finally {
    c.close();
  }
}

/** Python's csv module reads the export: [header, ...rows]. */
function pythonCsv(file: string): string[][] {
  const r = spawnSync('python3', ['-c', 'import csv,json,sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline="", encoding="utf-8")))))', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as string[][];
}

test('recipients: import by CLI, merge in the sink, PATCH, export via Python csv, bad rows, account isolation, privacy delete', { timeout: 180_000 }, async () => {
  const shop = newApiKey('shop');
  const crm = newApiKey('crm');
  const dataDir = tempDir('recipients-e2e');
  const { sink, sinkDir } = await startTestSink(dataDir);
  const { config, listenerPort } = await hostedConfig(sink.port, {
    accounts: [
      { id: 'default', networks: ['127.0.0.1/32', '::1/128'] },
      { id: 'shop', networks: ['127.0.0.2/32'], apiKeys: [shop.entry], listener: { requireTls: false } },
      { id: 'crm', networks: ['127.0.0.3/32'], apiKeys: [crm.entry], listener: { requireTls: false } },
    ],
  });
  const up = await startHostedProcess(dataDir, config);
  const api = `http://127.0.0.1:${(config.http as { port: number }).port}`;
  const call = (key: string, method: string, route: string, body?: unknown): Promise<Response> =>
    fetch(api + route, { method, headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? null : JSON.stringify(body) });
  const events = async (key: string): Promise<PostinoEvent[]> => {
    const text = (await (await call(key, 'GET', '/api/events?limit=10000')).text()).trim();
    return text ? text.split('\n').map((l) => JSON.parse(l) as PostinoEvent) : [];
  };
  /** Subject and text as a mail client shows them (decoded). */
  const shown = async (m: SinkMessage): Promise<string> => {
    const p = await simpleParser(fs.readFileSync(path.join(sinkDir, `${m.id}.eml`)));
    return `${p.subject ?? ''}\n${p.text ?? ''}`;
  };
  const arrived = async (testId: string, n: number): Promise<SinkMessage[]> => {
    let got: SinkMessage[] = [];
    await until(() => (got = readSink(sinkDir).filter((m) => m.testId === testId)).length >= n, `${n} copies of ${testId} in the sink`, 30_000);
    return got;
  };
  try {
    // 1. Import 10,000 rows by CLI (and one with a quote, a comma and non-ASCII).
    const file = path.join(dataDir, 'customers.csv');
    const rows = ['address,first_name,city'];
    for (let i = 0; i < ROWS - 1; i++) rows.push(`user${i}@shop.example,Name${i},City${i % 50}`);
    rows.push('zoe@shop.example,"Zoë ""Z"", Jr.",Zürich');
    fs.writeFileSync(file, rows.join('\n') + '\n');
    const imp = await cli(shop.token, ['import', file, '--api', api]);
    assert.equal(imp.status, 0, imp.stdout + imp.stderr);
    assert.match(imp.stdout, /^10000 rows in .*: created 10000, updated 0, unchanged 0, rejected 0$/m);

    // 2. Merge from the database: the imported name, "friend" for an unknown address.
    await send(listenerPort, '127.0.0.2', ['user42@shop.example', 'stranger@else.example', 'zoe@shop.example'], 'merge-1');
    const first = await arrived('merge-1', 3);
    const to = (ms: SinkMessage[], rcpt: string): SinkMessage => ms.find((m) => m.rcptTo.includes(rcpt))!;
    assert.equal(await shown(to(first, 'user42@shop.example')), 'Hello Name42\nHello Name42, from City42.\n');
    assert.equal(await shown(to(first, 'stranger@else.example')), 'Hello friend\nHello friend, from nowhere.\n');
    assert.equal(await shown(to(first, 'zoe@shop.example')), 'Hello Zoë "Z", Jr.\nHello Zoë "Z", Jr., from Zürich.\n');

    // X-Postino-Vars first, then the recipient's fields, then the default.
    await send(listenerPort, '127.0.0.2', ['user42@shop.example'], 'merge-vars', 'X-Postino-Vars: {"city": "Paris"}\r\n');
    assert.equal(await shown((await arrived('merge-vars', 1))[0]!), 'Hello Name42\nHello Name42, from Paris.\n');

    // 3. A field set by PATCH is used by the next message.
    const patched = await call(shop.token, 'PATCH', '/api/recipients/user42@shop.example', { fields: { first_name: 'Ada' } });
    assert.equal(patched.status, 200, await patched.clone().text());
    await send(listenerPort, '127.0.0.2', ['user42@shop.example'], 'merge-2');
    const second = await arrived('merge-2', 1);
    assert.equal(await shown(second[0]!), 'Hello Ada\nHello Ada, from City42.\n');

    // Counters follow the deliveries (the projection of the event log).
    await until(async () => ((await (await call(shop.token, 'GET', '/api/recipients/user42@shop.example')).json()) as { sent: number }).sent === 3, 'user42 counted three times as sent', 15_000);

    // 4. Export after traffic = the import + the recipient traffic created, read by Python.
    const out = path.join(dataDir, 'export.csv');
    const exp = await cli(shop.token, ['export', '--out', out, '--api', api]);
    assert.equal(exp.status, 0, exp.stderr);
    const [header, ...data] = pythonCsv(out);
    assert.deepEqual(header, ['address', 'city', 'first_name']);
    const expected = new Map<string, string[]>();
    for (let i = 0; i < ROWS - 1; i++) expected.set(`user${i}@shop.example`, [`City${i % 50}`, i === 42 ? 'Ada' : `Name${i}`]);
    expected.set('zoe@shop.example', ['Zürich', 'Zoë "Z", Jr.']);
    expected.set('stranger@else.example', ['', '']);
    assert.equal(data.length, expected.size);
    for (const [address, ...fields] of data) assert.deepEqual(fields, expected.get(address!), address);

    // 5. A bad CSV: each bad row reported by line and reason, the good rows in.
    const bad = path.join(dataDir, 'bad.csv');
    fs.writeFileSync(bad, ['address,first_name', 'good1@shop.example,G1', 'wrong@shop.example,a,b', 'no-at-sign,X', `huge@shop.example,${'h'.repeat(10 * 1024 * 1024)}`, 'good2@shop.example,G2'].join('\n') + '\n');
    const badRun = await cli(shop.token, ['import', bad, '--api', api]);
    assert.equal(badRun.status, 1, 'rejected rows: exit 1');
    assert.match(badRun.stdout, /created 2, updated 0, unchanged 0, rejected 3/);
    assert.match(badRun.stdout, /line 3: 3 columns; the header has 2/);
    assert.match(badRun.stdout, /line 4: no-at-sign: not an address/);
    assert.match(badRun.stdout, /line 5: record longer than 65536 characters/);
    assert.equal((await call(shop.token, 'GET', '/api/recipients/good2@shop.example')).status, 200);

    // 6. Account isolation: crm's key cannot read or change shop's recipients.
    assert.equal((await call(crm.token, 'GET', '/api/recipients/user1@shop.example?account=shop')).status, 403);
    assert.equal((await call(crm.token, 'PATCH', '/api/recipients/user1@shop.example?account=shop', { fields: { first_name: 'x' } })).status, 403);
    assert.equal((await call(crm.token, 'DELETE', '/api/recipients/user1@shop.example?account=shop')).status, 403);
    assert.equal((await call(crm.token, 'GET', '/api/recipients?account=shop')).status, 403);
    assert.equal((await call(crm.token, 'GET', '/api/recipients/export?account=shop')).status, 403);
    assert.equal((await call(crm.token, 'GET', '/api/recipients/user1@shop.example')).status, 404, "crm's own database has no such entry");
    const crmList = (await (await call(crm.token, 'GET', '/api/recipients')).json()) as { recipients: unknown[] };
    assert.equal(crmList.recipients.length, 0);
    const crmImport = await cli(crm.token, ['import', bad, '--account', 'shop', '--api', api]);
    assert.notEqual(crmImport.status, 0);
    assert.match(crmImport.stderr, /HTTP 403/);
    assert.equal(((await (await call(shop.token, 'GET', '/api/recipients/user1@shop.example')).json()) as { fields: Record<string, string> }).fields.first_name, 'Name1');

    // 7. Privacy delete: gone from the API, the feed shows the pseudonym, new mail suppressed.
    await until(async () => (await events(shop.token)).some((e) => e.type === 'delivered' && e.recipient === 'user42@shop.example'), 'user42 delivered', 15_000);
    const del = await cli(shop.token, ['delete', 'user42@shop.example', '--api', api]);
    assert.equal(del.status, 0, del.stderr);
    const pseudonym = /events now show (erased:[0-9a-f]{32})/.exec(del.stdout)?.[1];
    assert.ok(pseudonym, del.stdout);
    assert.equal((await call(shop.token, 'GET', '/api/recipients/user42@shop.example')).status, 404);
    const listed = (await (await call(shop.token, 'GET', '/api/recipients?field=city:City42')).json()) as { recipients: Array<{ address: string }> };
    assert.ok(!listed.recipients.some((r) => r.address === 'user42@shop.example'));
    await until(async () => !JSON.stringify(await events(shop.token)).includes('user42@shop.example'), 'the address erased from the feed', 15_000);
    const feed = await events(shop.token);
    assert.ok(feed.filter((e) => e.recipient === pseudonym && e.type === 'delivered').length === 3, 'every delivery now carries the pseudonym');
    assert.ok(feed.some((e) => e.type === 'recipient.deleted' && e.recipient === pseudonym));
    await send(listenerPort, '127.0.0.2', ['user42@shop.example', 'user43@shop.example'], 'after-delete');
    await arrived('after-delete', 1);
    await until(async () => (await events(shop.token)).some((e) => e.type === 'suppressed' && e.recipient === 'user42@shop.example'), 'the new message to the deleted address suppressed', 15_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(readSink(sinkDir).filter((m) => m.testId === 'after-delete').map((m) => m.rcptTo), [['user43@shop.example']]);
    assert.equal((await call(shop.token, 'GET', '/api/recipients/user42@shop.example')).status, 404, 'traffic did not bring it back');
  } finally {
    await up.stop();
    await sink.close();
  }
});

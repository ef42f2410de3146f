/*
 * A real Postfix as the MTA cluster: smtplib → forwarder → listener → engine →
 * Postfix (its own instance, test/helpers/postfix.ts) → capture sink, and the
 * engine-side kill-switch, queue status, /metrics and the event feed of that
 * node through `postino hosted …` and the hosted API.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { freePorts } from '../helpers/ports.js';
import { postfixMissing, startPostfix, type Postfix } from '../helpers/postfix.js';
import { CLI, startUp, tempDir, upConfig, type Running, type UpPorts } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { readSink, waitForSink } from '../helpers/sink-reader.js';
import { readSecret } from '../../common/secrets.js';

const run = promisify(execFile);
const skip = postfixMissing();

let up: Running | undefined;
let pf: Postfix | undefined;
let ports: UpPorts;
let dataDir: string;

before(async () => {
  if (skip) return;
  dataDir = tempDir('e2e-postfix');
  const [pfPort] = await freePorts(1);
  const c = await upConfig((p) => ({ delivery: { relays: [{ url: `smtp://127.0.0.1:${pfPort}`, weight: 1 }] }, sink: { port: p.sink } }));
  ports = c.ports;
  pf = await startPostfix({ port: pfPort!, relayhost: `[127.0.0.1]:${ports.sink}`, main: { message_size_limit: '52428800' } });
  up = await startUp(dataDir, c.config);
});

after(async () => {
  if (up) assert.equal(await up.stop(), 0);
  await pf?.stop();
});

async function cli(...args: string[]): Promise<string> {
  const r = await run(process.execPath, [CLI, ...args, '--api', `http://127.0.0.1:${ports.http}`], { env: { ...process.env, POSTINO_DATA: dataDir } });
  return r.stdout;
}

async function api(p: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${ports.http}${p}`, { headers: { authorization: `Bearer ${readSecret(dataDir, 'api-key')}` } });
}

test('mail from the forwarder passes listener → engine → Postfix → sink intact', { skip, timeout: 120_000 }, async () => {
  const sent = await runPythonSender(['--port', String(ports.forwarder), '--count', '30', '--specials', '--prefix', 'pf']).done;
  assert.deepEqual(sent.filter((r) => !r.ok), []);
  const sink = await waitForSink(path.join(dataDir, 'sink'), (m) => m.length >= 30, 60_000);
  assert.equal(sink.length, 30, 'every message arrived once');
  const byId = new Map(sink.map((m) => [m.testId, m]));
  for (const s of sent) {
    const got = byId.get(s.testId);
    assert.ok(got, `${s.testId} arrived`);
    assert.equal(got.bodySha, s.bodySha, `${s.testId}: body intact`);
    // postino up turns VERP on: each copy returns to its own signed bounce address.
    assert.match(got.mailFrom, /^bounces\+[0-9a-z]+-[0-9a-z]+-[a-z2-7]+@bounce\.localhost$/);
    assert.deepEqual(got.rcptTo, ['customer0@example.com']);
  }
  const h = byId.get('pf-0')!.headers;
  assert.match(h, /^Received: from postino\.localhost \((?:unknown|localhost) \[127\.0\.0\.1\]\)\r?\n\tby postfix\.test \(Postfix\)/m, 'Postfix relayed it');
  assert.match(h, /by postino\.localhost \(Postino\)/, 'after the engine');
  assert.match(pf!.log(), /status=sent/);
  const events = (await (await api('/api/events?after=0&limit=1000')).text()).trim().split('\n').map((l) => JSON.parse(l) as { type: string; seq: number; smtp?: { response: string } });
  const delivered = events.filter((e) => e.type === 'delivered');
  assert.equal(delivered.length, 30, 'a delivered event per copy');
  assert.match(delivered[0]!.smtp!.response, /queued as/, "Postfix's own reply");
  const seqs = events.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'oldest first');
  const page = (await (await api(`/api/events?after=${seqs[9]}&limit=5&type=delivered`)).text()).trim().split('\n').map((l) => JSON.parse(l) as { seq: number; type: string });
  assert.equal(page.length, 5, 'limit');
  assert.ok(page.every((e) => e.seq > seqs[9]! && e.type === 'delivered'), 'resumable after a seq, filtered by type');
  const anon = await fetch(`http://127.0.0.1:${ports.http}/api/events?after=0`);
  assert.equal(anon.status, 401, 'the feed needs the API key');
});

test('kill-switch: postino hosted pause holds delivery while intake accepts; status shows the queue; resume delivers', { skip, timeout: 60_000 }, async () => {
  const before = readSink(path.join(dataDir, 'sink')).length;
  assert.match(await cli('hosted', 'pause'), /delivery paused; paused now: global yes/);
  const sent = await runPythonSender(['--port', String(ports.forwarder), '--count', '5', '--prefix', 'ks']).done;
  assert.ok(sent.every((r) => r.ok), 'still accepting');
  // Wait until the five copies reached the engine's delivery queue.
  const until = Date.now() + 20_000;
  let status = '';
  while (Date.now() < until) {
    status = await cli('hosted', 'status');
    if (/^delivery\s+5$/m.test(status)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.match(status, /^delivery\s+5$/m, status);
  assert.match(status, /^paused\s+yes \(global\)$/m);
  assert.match(status, /^example\.com\s+5\s/m, 'per-domain counts');
  assert.equal(readSink(path.join(dataDir, 'sink')).length, before, 'nothing delivered while paused');
  const metrics = await (await api('/metrics')).text();
  assert.match(metrics, /^postino_delivery_paused\{scope="\*"\} 1$/m);
  assert.match(metrics, /^postino_delivery_queue_domain_copies\{domain="example.com"\} 5$/m);
  assert.match(await cli('hosted', 'resume'), /resumed; paused now: global no/);
  const sink = await waitForSink(path.join(dataDir, 'sink'), (m) => m.length >= before + 5, 30_000);
  assert.equal(sink.length, before + 5);
});

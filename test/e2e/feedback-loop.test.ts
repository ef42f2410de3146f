/*
 * The feedback loop as a user meets it, through `postino up` with its
 * defaults (VERP on with a local bounce domain, the bounce intake started):
 * a bounce to the VERP return path of a delivered copy suppresses the
 * address; a one-click POST to the URL in a delivered List-Unsubscribe header
 * unsubscribes; links minted before `postino keys rotate` keep working; the
 * unsubscribe page renders in headless Chromium.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { PostinoEvent } from '../../common/events.js';
import { dsn, until } from '../helpers/feedback.js';
import { requirePeer } from '../helpers/peers.js';
import { CLI, startUp, tempDir, upConfig, type Running, type UpPorts } from '../helpers/postino.js';
import { waitForSink, type SinkMessage } from '../helpers/sink-reader.js';
import { open, send } from '../helpers/smtp-session.js';

const CHROMIUM = '/usr/bin/chromium';
const CURL = '/usr/bin/curl';

let up: Running;
let ports: UpPorts;
let dataDir: string;
let apiKey: string;

before(async () => {
  dataDir = tempDir('feedback-e2e');
  // The account's IT staff get a summary of what came back (at once: within seconds).
  const c = await upConfig(() => ({ accounts: [{ id: 'default', engine: { notify: { addresses: ['it@shop.example.org'] } } }] }));
  ports = c.ports;
  up = await startUp(dataDir, c.config);
  apiKey = fs.readFileSync(path.join(dataDir, 'secrets', 'api-key'), 'utf8').trim();
});

after(async () => {
  assert.equal(await up.stop(), 0);
});

const sinkDir = (): string => path.join(dataDir, 'sink');

async function api<T>(route: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${ports.http}${route}`, { ...init, headers: { authorization: `Bearer ${apiKey}`, ...(init.headers ?? {}) } });
  assert.ok(res.ok, `${route}: ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as T;
}

async function events(): Promise<PostinoEvent[]> {
  const res = await fetch(`http://127.0.0.1:${ports.http}/api/events?limit=10000`, { headers: { authorization: `Bearer ${apiKey}` } });
  return (await res.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as PostinoEvent);
}

/** Sends one message through the forwarder and returns its delivered copy in the sink. */
async function sendAndDeliver(to: string, subject: string, extraHeaders = ''): Promise<SinkMessage> {
  const c = await open(ports.forwarder);
  const id = `${subject}-${Date.now()}`;
  const r = await send(c, 'shop@example.org', [to], `From: shop@example.org\r\nTo: ${to}\r\nSubject: ${subject}\r\nX-Test-Id: ${id}\r\n${extraHeaders}\r\nHello.`);
  c.socket.destroy();
  assert.match(r, /^250 /);
  const sink = await waitForSink(sinkDir(), (m) => m.some((x) => x.testId === id), 20_000);
  const got = sink.find((x) => x.testId === id);
  assert.ok(got, `${subject} delivered`);
  return got;
}

function unfoldHeader(headers: string, name: string): string | undefined {
  const m = new RegExp(`^${name}:[ \\t]*(.*(?:\\r\\n[ \\t].*)*)`, 'im').exec(headers);
  return m?.[1]?.replace(/\r\n[ \t]+/g, ' ');
}

test('a 5.1.1 DSN to the VERP return path of a delivered copy: suppressed within 1 s, the next message is suppressed and not delivered', { timeout: 60_000 }, async () => {
  const first = await sendAndDeliver('nobody@hard.test', 'order-1');
  assert.match(first.mailFrom, /^bounces\+[0-9a-z]+-[0-9a-z]+-[a-z2-7]+@bounce\.localhost$/, 'VERP is on by default under postino up');
  const s = await open(ports.bounce);
  const t0 = Date.now();
  const r = await send(s, '', [first.mailFrom], dsn(first.mailFrom, 'nobody@hard.test', '5.1.1', '550 5.1.1 <nobody@hard.test>: Recipient address rejected: User unknown'));
  s.socket.destroy();
  assert.match(r, /^250 /);
  await until('the suppression', async () => (await api<{ suppressions: unknown[] }>('/api/suppressions?account=default&address=nobody@hard.test')).suppressions.length > 0, 1_000);
  console.log(`# suppressed ${Date.now() - t0} ms after the DSN was accepted`);

  const before = await waitForSink(sinkDir(), () => true, 0);
  const c = await open(ports.forwarder);
  assert.match(await send(c, 'shop@example.org', ['nobody@hard.test'], 'From: shop@example.org\r\nTo: nobody@hard.test\r\nSubject: order-2\r\n\r\nHello again.'), /^250 /);
  c.socket.destroy();
  const sup = await until('the suppressed event', async () => (await events()).find((e) => e.type === 'suppressed' && e.recipient === 'nobody@hard.test'), 20_000);
  assert.match(sup.reason ?? '', /hard-bounce/);
  await new Promise((r) => setTimeout(r, 1_000));
  const after = await waitForSink(sinkDir(), () => true, 0);
  assert.equal(after.filter((m) => m.rcptTo.includes('nobody@hard.test')).length, before.filter((m) => m.rcptTo.includes('nobody@hard.test')).length, 'no delivery attempt');

  // The people who can act got a readable summary, through our own delivery.
  const note = (await waitForSink(sinkDir(), (m) => m.some((x) => x.rcptTo.includes('it@shop.example.org')), 20_000)).find((x) => x.rcptTo.includes('it@shop.example.org'));
  assert.ok(note, 'a notification to the account IT address');
  assert.equal(note.mailFrom, '', 'null envelope sender: no bounce loop');
  assert.match(note.headers, /^Auto-Submitted: auto-generated\r?$/m);
  assert.match(note.headers, /^Subject: Postino: 1 hard bounce for default\r?$/m);
  const text = fs.readFileSync(path.join(sinkDir(), `${note.id}.eml`), 'utf8');
  assert.match(text, /bounce hard 5\.1\.1\s+nobody@hard\.test/);
  assert.doesNotMatch(text, /\/t\/o\/|List-Unsubscribe/, 'not rewrapped: no tracking, no unsubscribe');
});

test('one-click: curl -X POST -d List-Unsubscribe=One-Click against the delivered header URL → 200, suppressed, a second POST 200, one event', { timeout: 60_000 }, async () => {
  const m = await sendAndDeliver('ada@example.com', 'news-1', 'X-Postino-Stream: bulk\r\nX-Postino-List: news\r\n');
  const header = unfoldHeader(m.headers, 'List-Unsubscribe');
  const url = /<(http:\/\/[^>]+\/u\/[^>]+)>/.exec(header ?? '')?.[1];
  assert.ok(url, `List-Unsubscribe: ${header}`);
  assert.equal(unfoldHeader(m.headers, 'List-Unsubscribe-Post'), 'List-Unsubscribe=One-Click');
  // curl is the client here (a real one-click POST, as a mail client sends it): a peer like the others.
  if (requirePeer('curl', CURL)) return;
  const post = (): { status: string; body: string } => {
    const r = spawnSync(CURL, ['-s', '-o', '/dev/stdout', '-w', '\n%{http_code}', '-X', 'POST', '-d', 'List-Unsubscribe=One-Click', url], { encoding: 'utf8' });
    const lines = r.stdout.trimEnd().split('\n');
    return { status: lines.pop()!, body: lines.join('\n') };
  };
  assert.equal(post().status, '200');
  assert.equal(post().status, '200');
  const list = await api<{ suppressions: Array<{ reason: string; scope: string }> }>('/api/suppressions?account=default&address=ada@example.com');
  assert.deepEqual(list.suppressions.map((s) => [s.reason, s.scope]), [['unsubscribe', 'list:news']]);
  const unsubscribed = async (): Promise<PostinoEvent[]> => (await events()).filter((e) => e.type === 'unsubscribed' && e.recipient === 'ada@example.com');
  // With storage.postgres the feed is the global one, a moment behind the node: wait for the event,
  // then give a second one (the repeated POST, were it recorded) the same moment to show up.
  await until('the unsubscribed event in the feed', async () => (await unsubscribed()).length > 0, 10_000);
  await new Promise((r) => setTimeout(r, 500));
  const evs = await unsubscribed();
  assert.equal(evs.length, 1);
  assert.equal(evs[0]!.via, 'one-click');

  // The page at GET, as a person sees it.
  const skip = requirePeer('chromium', CHROMIUM);
  if (skip) return;
  const shot = path.join(dataDir, 'unsubscribe-page.png');
  const r = spawnSync(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', `--user-data-dir=${path.join(dataDir, 'chromium')}`, '--window-size=800,500', `--screenshot=${shot}`, url], { encoding: 'utf8', timeout: 60_000 });
  assert.ok(fs.existsSync(shot), `chromium wrote no screenshot: ${r.stderr}`);
  const png = fs.readFileSync(shot);
  assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
  assert.ok(png.length > 5_000, 'a page, not a blank');
  const dom = spawnSync(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', `--user-data-dir=${path.join(dataDir, 'chromium')}`, '--dump-dom', url], { encoding: 'utf8', timeout: 60_000 });
  assert.match(dom.stdout, /<button type="submit">Unsubscribe<\/button>/);
  assert.match(dom.stdout, /a•a@example\.com/);
  console.log(`# unsubscribe page screenshot (headless Chromium): ${shot}`);
});

test('links minted before postino keys rotate still work after it; new links use the new key', { timeout: 60_000 }, async () => {
  const before = await sendAndDeliver('bea@example.com', 'rotate-1', 'X-Postino-Stream: bulk\r\n');
  const oldUrl = /<(http:\/\/[^>]+\/u\/[^>]+)>/.exec(unfoldHeader(before.headers, 'List-Unsubscribe') ?? '')![1]!;
  const rot = spawnSync(process.execPath, [CLI, 'keys', 'rotate'], { env: { ...process.env, POSTINO_DATA: dataDir }, encoding: 'utf8' });
  assert.equal(rot.status, 0, rot.stderr);
  assert.match(rot.stdout, /new signing key 2 /);
  assert.equal((await fetch(oldUrl)).status, 200, 'the old link still shows its page');
  // The running node signs with the new key within seconds (it looks at the key file every 10 s).
  const fresh = await until(
    'a link signed with key 2',
    async () => {
      const m = await sendAndDeliver('cid@example.com', `rotate-${Date.now()}`, 'X-Postino-Stream: bulk\r\n');
      const u = /<(http:\/\/[^>]+\/u\/([0-9a-z]+)\.[^>]+)>/.exec(unfoldHeader(m.headers, 'List-Unsubscribe') ?? '');
      return u?.[2] === '2' && u[1];
    },
    30_000,
  );
  assert.equal((await fetch(fresh, { method: 'POST', body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status, 200);
  assert.equal((await fetch(oldUrl, { method: 'POST', body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status, 200, 'the pre-rotation link unsubscribes');
  const sup = await api<{ suppressions: Array<{ address: string }> }>('/api/suppressions?account=default&reason=unsubscribe');
  assert.ok(sup.suppressions.some((s) => s.address === 'bea@example.com'));
  assert.ok(sup.suppressions.some((s) => s.address === 'cid@example.com'));
});

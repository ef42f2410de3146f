/*
 * Two hosted nodes behind a real HAProxy (issue #14), as in deploy/multi-node:
 * each with its own durable LevelDB queue, both sharing one PostgreSQL (the
 * test's own cluster, schema by `postino db migrate`); a forwarder relays over
 * verified STARTTLS to the balancer, HAProxy passes the forwarder's address
 * with PROXY v2 and health-checks the listeners, the nodes share the TLS pair
 * and keys as a deployment does. Sessions spread over both nodes and every
 * message arrives once; the event feed read through either node is the same
 * list, every event once, in one order; `postino hosted status` on either
 * lists both nodes. SIGKILL of node A under load sends new sessions to node
 * B, and A's acknowledged messages leave when it is back: 0 lost. PostgreSQL
 * stopped for 30 s under a steady stream: the nodes accept every message,
 * nothing reaches an address suppressed through node A, and the rest is
 * delivered and in the feed once it is back.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ensureDevTls, ensureSecret, secretsDir } from '../../common/secrets.js';
import { FileKeyRing } from '../../common/signing-keys.js';
import { forwarderConfig, sleep, startForwarderProcess, startTestSink } from '../helpers/forwarder.js';
import { haproxyMissing, startHaproxy } from '../helpers/haproxy.js';
import { startHostedProcess } from '../helpers/hosted.js';
import { freePorts } from '../helpers/ports.js';
import { postgresMissing, startPostgres } from '../helpers/postgres.js';
import { CLI, tempDir, type Running } from '../helpers/postino.js';
import { runPythonClients } from '../helpers/python-sender.js';
import { countDelivered, readSink } from '../helpers/sink-reader.js';

const CLIENTS = 10;
/** The 2,000 messages in the healthy phase; 1,000 more through the kill. */
const PER_CLIENT = 200;

/** HAProxy's side of its connections to the nodes; the forwarder and the accounts' networks are 127.0.0.1. */
const BALANCER = '127.0.0.3';

const accepted = (p: Running): number => p.lines.filter((l) => l.includes('"event":"accepted"')).length;

interface FeedEvent {
  seq: number;
  id: string;
  type: string;
  node: string;
  nodeSeq: number;
}

/**
 * The whole feed through one node's API, as a DataExporter client reads it. With `retryUnavailable`
 * (reads while PostgreSQL comes back) a 503, the feed's answer while its shared state is unavailable,
 * is read again after a moment, as such a client would; anything else must be a 200.
 */
async function feed(dataDir: string, httpPort: number, o: { retryUnavailable?: boolean } = {}): Promise<FeedEvent[]> {
  const key = fs.readFileSync(path.join(dataDir, 'secrets', 'api-key'), 'utf8').trim();
  for (let attempt = 1; ; attempt++) {
    const r = await fetch(`http://127.0.0.1:${httpPort}/api/events?limit=100000`, { headers: { authorization: `Bearer ${key}` } });
    if (r.status === 503 && o.retryUnavailable && attempt < 20) {
      await r.body?.cancel();
      await sleep(300);
      continue;
    }
    assert.equal(r.status, 200, `feed read ${attempt}: ${r.status}`);
    return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as FeedEvent);
  }
}

test('two hosted nodes behind HAProxy: sessions spread, every message once; SIGKILL of node A sends new sessions to B and loses nothing', { timeout: 240_000 }, async (t) => {
  const skip = haproxyMissing() ?? postgresMissing();
  if (skip) return t.skip(skip);
  const pg = await startPostgres();
  t.after(() => pg.close());
  const pgUrl = await pg.newDatabase();
  const root = tempDir('multi-node');
  const { sink, sinkDir } = await startTestSink(root);
  const [l1, l2, h1, h2, lbSmtp, lbHttp] = await freePorts(6);
  const nodeDir = (n: string): string => {
    fs.mkdirSync(path.join(root, n), { recursive: true });
    return path.join(root, n);
  };
  const aDir = nodeDir('a');
  const bDir = nodeDir('b');
  // One TLS pair and one set of keys for the whole deployment (the balancer's name is the listeners' name).
  const tls = await ensureDevTls(secretsDir(aDir));
  FileKeyRing.open(aDir); // the token keys and the pseudonym key made once, then copied: links A signs verify on B
  ensureSecret(aDir, 'pseudonym-key');
  fs.cpSync(secretsDir(aDir), secretsDir(bDir), { recursive: true });
  const nodeConfig = (listenerPort: number, httpPort: number): Record<string, unknown> => ({
    log: { level: 'info' },
    listener: { port: listenerPort, proxyProtocolFrom: [`${BALANCER}/32`] },
    http: { port: httpPort },
    feedback: { port: null },
    delivery: { relays: [`smtp://127.0.0.1:${sink.port}`] },
    storage: { postgres: { url: pgUrl } },
  });
  const aConfig = nodeConfig(l1!, h1!);
  // The schema first, as an operator does before starting nodes (stop, migrate, start).
  fs.writeFileSync(path.join(aDir, 'hosted.json'), JSON.stringify(aConfig));
  const migrated = spawnSync(process.execPath, [CLI, 'db', 'migrate', '--config', path.join(aDir, 'hosted.json')], { encoding: 'utf8', env: { ...process.env, POSTINO_DATA: aDir }, timeout: 60_000 });
  assert.equal(migrated.status, 0, migrated.stderr);
  let a = await startHostedProcess(aDir, aConfig);
  const b = await startHostedProcess(bDir, nodeConfig(l2!, h2!));
  const lb = await startHaproxy(path.join(root, 'haproxy'), [
    { name: 'smtp', port: lbSmtp!, sendProxy: true, source: BALANCER, servers: [{ name: 'a', port: l1! }, { name: 'b', port: l2! }] },
    { name: 'http', port: lbHttp!, sendProxy: false, httpCheck: '/health', servers: [{ name: 'a', port: h1! }, { name: 'b', port: h2! }] },
  ]);
  const fwdDir = nodeDir('forwarder');
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${lbSmtp}`], { forwarder: { relay: { requireTls: true, caFile: tls.caFile, serverName: 'localhost' } } });
  const fwd = await startForwarderProcess(fwdDir, config);
  try {
    // Both nodes healthy as HAProxy sees them, through its HTTP frontend too.
    for (let i = 0; i < 50 && Object.values(await lb.serverStates()).some((s) => s !== 'UP'); i++) await sleep(200);
    assert.deepEqual(await lb.serverStates(), { 'smtp_nodes/a': 'UP', 'smtp_nodes/b': 'UP', 'http_nodes/a': 'UP', 'http_nodes/b': 'UP' });
    assert.equal((await fetch(`http://127.0.0.1:${lbHttp}/health`)).status, 200);

    // Phase 1: no failure. Every message once, over both nodes.
    const t1 = Date.now();
    const first = runPythonClients(CLIENTS, 'mn1-', ['--port', String(ports.smtp), '--count', String(PER_CLIENT)]);
    await first.done;
    const acked1 = first.acked();
    assert.equal(acked1.length, CLIENTS * PER_CLIENT);
    const one = await countDelivered(sinkDir, acked1, 60_000);
    const spread = [accepted(a), accepted(b)];
    const phase1 = (Date.now() - t1) / 1000;
    console.log(`# multi-node: ${acked1.length} acknowledged and delivered in ${phase1.toFixed(1)} s; node A accepted ${spread[0]}, node B ${spread[1]}; ${one.lost.length} lost, ${one.duplicates} duplicates`);
    assert.deepEqual(one.lost, []);
    assert.equal(one.duplicates, 0, 'every message once');
    assert.equal(spread[0]! + spread[1]!, acked1.length, 'each message accepted by exactly one node');
    assert.ok(spread[0]! > 0 && spread[1]! > 0, `sessions spread over both nodes (${spread.join(' / ')})`);
    // The feed through either node: the same events, each once, in one order, from both nodes.
    let viaA: FeedEvent[] = [];
    for (let i = 0; i < 100; i++) {
      viaA = await feed(aDir, h1!);
      if (viaA.filter((e) => e.type === 'delivered').length >= acked1.length) break;
      await sleep(200);
    }
    const viaB = await feed(bDir, h2!);
    const common = Math.min(viaA.length, viaB.length);
    assert.deepEqual(viaB.slice(0, common).map((e) => e.id), viaA.slice(0, common).map((e) => e.id), 'the same feed through both nodes');
    assert.deepEqual(viaA.map((e) => e.seq), Array.from({ length: viaA.length }, (_, i) => i + 1), 'seqs 1, 2, 3, … in one order');
    assert.equal(new Set(viaA.map((e) => e.id)).size, viaA.length, 'every event once');
    assert.equal(viaA.filter((e) => e.type === 'delivered').length, acked1.length, 'a delivered event for every message');
    assert.deepEqual([...new Set(viaA.map((e) => e.node))].length, 2, 'events of both nodes');
    console.log(`# multi-node: the feed through node A and node B: ${viaA.length} and ${viaB.length} events, the same order, seqs 1..${viaA.length}`);
    // Both nodes in the status of either.
    const status = spawnSync(process.execPath, [CLI, 'hosted', 'status', '--api', `http://127.0.0.1:${h2}`], { encoding: 'utf8', env: { ...process.env, POSTINO_DATA: bDir } });
    assert.equal(status.status, 0, status.stderr);
    const nodeRows = status.stdout.split('\n').filter((l) => /^\S+(?: \(this\))?\s+up\s+\d+/.test(l));
    assert.equal(nodeRows.length, 2, status.stdout);
    assert.doesNotMatch(status.stdout, /SECRETS DIFFER/, 'the nodes share their token and pseudonym keys');

    // The nodes saw the forwarder's address through PROXY v2: HAProxy connects from 127.0.0.3, outside every account's networks.
    const clients = new Set([...a.lines, ...b.lines].filter((l) => l.includes('"event":"accepted"')).map((l) => (JSON.parse(l) as { client: string }).client));
    assert.deepEqual([...clients], ['127.0.0.1'], 'the client address from the PROXY header');

    // Phase 2: node A killed under load; HAProxy marks it down, B takes the new sessions.
    const second = runPythonClients(CLIENTS, 'mn2-', ['--port', String(ports.smtp), '--count', String(PER_CLIENT / 2), '--error-pause-ms', '50']);
    for (let i = 0; i < 300 && second.acked().length < 200; i++) await sleep(50);
    a.kill9();
    await a.exited;
    const killedAt = Date.now();
    const bAtKill = accepted(b);
    let states = await lb.serverStates();
    for (let i = 0; i < 100 && states['smtp_nodes/a'] !== 'DOWN'; i++) {
      await sleep(100);
      states = await lb.serverStates();
    }
    const downAfter = (Date.now() - killedAt) / 1000;
    assert.equal(states['smtp_nodes/a'], 'DOWN', 'HAProxy marked node A down');
    assert.equal(states['smtp_nodes/b'], 'UP');
    // Up to 20 s: the forwarder under this load steps its relay back (intake-first.ts) and may let a
    // new message wait up to relay.yieldToIntakeSeconds (10 s) before it runs at full concurrency.
    for (let i = 0; i < 200 && accepted(b) < bAtKill + 100; i++) await sleep(100);
    const bWhileDown = accepted(b) - bAtKill;
    const bTookSecs = (Date.now() - killedAt) / 1000;
    assert.ok(bWhileDown >= 100, `node B took the new sessions while A was down (${bWhileDown})`);
    a = await startHostedProcess(aDir, aConfig);
    await second.done;
    const sendersDone = (Date.now() - killedAt) / 1000;
    const acked2 = second.acked();
    const two = await countDelivered(sinkDir, [...acked1, ...acked2], 90_000);
    const allIn = (Date.now() - killedAt) / 1000;
    console.log(
      `# multi-node: SIGKILL of node A under load; HAProxy marked it down after ${downAfter.toFixed(1)} s; ` +
        `node B accepted ${bWhileDown} meanwhile (${bTookSecs.toFixed(1)} s after the kill); A restarted; senders done ${sendersDone.toFixed(1)} s and all in the sink ${allIn.toFixed(1)} s after the kill; ${acked2.length} acknowledged, ${two.lost.length} lost, ${two.duplicates} duplicates (at-least-once around a SIGKILL, as in the single-node crash tests), ${two.unacked} unacked`,
    );
    assert.deepEqual(two.lost, [], 'no acknowledged message lost');

    // Phase 3: PostgreSQL stopped for 30 s under a steady stream. Every message goes to two people,
    // one suppressed through node A's API first: the nodes keep accepting, nothing reaches the
    // suppressed address, and the rest is delivered and in the feed once PostgreSQL is back.
    const nodeKey = fs.readFileSync(path.join(aDir, 'secrets', 'api-key'), 'utf8').trim();
    const added = await fetch(`http://127.0.0.1:${h1}/api/suppressions`, { method: 'POST', headers: { authorization: `Bearer ${nodeKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ account: 'default', address: 'customer1@example.com', reason: 'manual' }) });
    assert.ok(added.ok, `suppressed through node A (${added.status})`);
    const inSinkBefore = readSink(sinkDir).length;
    const third = runPythonClients(CLIENTS, 'mn3-', ['--port', String(ports.smtp), '--count', '40', '--rcpt', '2', '--interval-ms', '500']);
    await sleep(3_000);
    await pg.stop();
    const pgDownAt = Date.now();
    await sleep(30_000);
    await pg.start();
    const pgDownFor = (Date.now() - pgDownAt) / 1000;
    await third.done;
    const acked3 = third.acked();
    assert.equal(acked3.length, CLIENTS * 40, 'every message accepted, PostgreSQL down or not');
    const three = await countDelivered(sinkDir, acked3, 120_000);
    const copies = readSink(sinkDir).slice(inSinkBefore);
    const toSuppressed = copies.filter((m) => m.rcptTo.includes('customer1@example.com')).length;
    console.log(`# multi-node: PostgreSQL down ${pgDownFor.toFixed(0)} s under load: ${acked3.length} acknowledged, ${three.lost.length} lost, ${copies.length} copies delivered, ${toSuppressed} to the suppressed address`);
    assert.deepEqual(three.lost, [], 'every message delivered to the other recipient once PostgreSQL was back');
    assert.equal(toSuppressed, 0, 'nothing to the suppressed address, PostgreSQL down or not');
    let feedAfter: FeedEvent[] = [];
    for (let i = 0; i < 100; i++) {
      feedAfter = await feed(bDir, h2!, { retryUnavailable: true });
      if (feedAfter.filter((e) => e.type === 'suppressed').length >= acked3.length) break;
      await sleep(300);
    }
    assert.equal(feedAfter.filter((e) => e.type === 'suppressed').length, acked3.length, 'the feed caught up: a suppressed event for every message');
    assert.deepEqual(feedAfter.map((e) => e.seq), Array.from({ length: feedAfter.length }, (_, i) => i + 1), 'still one order without a hole');
  } finally {
    await fwd.stop();
    await lb.stop();
    await a.stop();
    await b.stop();
    await sink.close();
  }
});

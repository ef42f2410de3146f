/*
 * The MTA cluster as weighted relays: a stopped relay is marked down without
 * losing a copy, probed, and takes traffic again when it is back; with every
 * relay down the copies are held (no try charged) and leave when one returns.
 * Sending IPs: each account's copies leave only from its own address.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatHostedStatus } from '../../../app/printers.js';
import { startDeliveryHarness, sink } from '../../helpers/delivery-harness.js';
import { readSink } from '../../helpers/sink-reader.js';

test('two relays, one stopped: every copy goes through the other; when it returns, traffic spreads again', { timeout: 60_000 }, async () => {
  const a = await sink();
  let b = await sink();
  const bPort = b.port;
  const bDir = b.dir;
  const h = await startDeliveryHarness({
    delivery: {
      relays: [`smtp://127.0.0.1:${a.port}`, { url: `smtp://127.0.0.1:${bPort}`, weight: 1 }],
      relayProbeScheduleSeconds: [0.5],
    },
  });
  try {
    for (let i = 0; i < 10; i++) await h.send(`warm${i}@example.com`);
    await h.waitFor((e) => e.filter((x) => x.type === 'delivered').length >= 10, 10_000);
    assert.ok(readSink(a.dir).length > 0 && readSink(bDir).length > 0, 'both relays take traffic at first');

    await b.close();
    const before = readSink(bDir).length;
    for (let i = 0; i < 40; i++) await h.send(`down${i}@example.com`);
    let evs = await h.waitFor((e) => e.filter((x) => x.type === 'delivered').length >= 50, 20_000);
    assert.equal(evs.filter((e) => e.type === 'delivered').length, 50, 'no copy lost');
    assert.equal(readSink(bDir).length, before, 'nothing reached the stopped relay');
    const inA = readSink(a.dir).filter((m) => m.rcptTo[0]!.startsWith('down')).length;
    assert.equal(inA, 40, 'all 40 went through the other relay');
    assert.equal(h.delivery.pool.status()[1]!.state, 'down', 'the stopped relay is marked down');

    b = await sink([], bPort, bDir);
    const until = Date.now() + 5_000;
    while (h.delivery.pool.status()[1]!.state === 'down' && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.equal(h.delivery.pool.status()[1]!.state, 'up', 'a probe found it up again');
    for (let i = 0; i < 20; i++) await h.send(`back${i}@example.com`);
    evs = await h.waitFor((e) => e.filter((x) => x.type === 'delivered').length >= 70, 20_000);
    assert.equal(evs.filter((e) => e.type === 'delivered').length, 70);
    const backInB = readSink(bDir).filter((m) => m.rcptTo[0]!.startsWith('back')).length;
    assert.ok(backInB >= 5, `the returned relay took ${backInB} of 20`);
  } finally {
    await h.close();
    await a.close();
    await b.close();
  }
});

test('sending IPs: account A sends only from 127.0.0.2, account B only from 127.0.0.3', { timeout: 30_000 }, async () => {
  const s = await sink();
  const h = await startDeliveryHarness({
    accounts: [
      { id: 'default' },
      { id: 'a', networks: ['127.0.0.2/32'], delivery: { sourceAddresses: [{ address: '127.0.0.2' }] } },
      { id: 'b', networks: ['127.0.0.3/32'], delivery: { sourceAddresses: [{ address: '127.0.0.3' }] } },
    ],
    delivery: { relays: [`smtp://127.0.0.1:${s.port}`] },
  });
  try {
    for (let i = 0; i < 20; i++) {
      await h.send(`a${i}@example.com`, { account: 'a' });
      await h.send(`b${i}@example.com`, { account: 'b' });
      await h.send(`d${i}@example.com`, { account: 'default' });
    }
    await h.waitFor((e) => e.filter((x) => x.type === 'delivered').length >= 60, 15_000);
    const msgs = readSink(s.dir);
    assert.equal(msgs.length, 60);
    const from = (p: string): Set<string> => new Set(msgs.filter((m) => m.rcptTo[0]!.startsWith(p)).map((m) => m.clientAddress));
    assert.deepEqual([...from('a')], ['127.0.0.2']);
    assert.deepEqual([...from('b')], ['127.0.0.3']);
    const shared = from('d');
    assert.ok(!shared.has('127.0.0.2') && !shared.has('127.0.0.3'), `the shared account never uses reserved IPs (${[...shared].join(', ')})`);
  } finally {
    await h.close();
    await s.close();
  }
});

test('config: a reserved sending IP cannot also be shared or reserved twice; relays accept plain URLs and {url, weight}', async () => {
  const { parseConfig, ConfigError } = await import('../../../common/config.js');
  assert.throws(
    () => parseConfig({ accounts: [{ id: 'a', delivery: { sourceAddresses: [{ address: '127.0.0.2' }] } }], delivery: { sourceAddresses: [{ address: '127.0.0.2' }] } }),
    (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.path === 'delivery.sourceAddresses.0.address' && /reserved by account "a"/.test(p.message)),
  );
  const c = parseConfig({ delivery: { relays: ['smtp://127.0.0.1:25', { url: 'smtps://u:p@127.0.0.1:465', weight: 3, requireTls: true }] } });
  assert.deepEqual(c.delivery.relays, [
    { url: 'smtp://127.0.0.1:25', weight: 1, requireTls: false },
    { url: 'smtps://u:p@127.0.0.1:465', weight: 3, requireTls: true },
  ]);
});

test('every relay down: copies are held without a try or a deferred event, and all leave within seconds of its return (default retry schedule)', { timeout: 60_000 }, async () => {
  let s = await sink();
  const port = s.port;
  const dir = s.dir;
  await s.close();
  const h = await startDeliveryHarness({ delivery: { relays: [`smtp://127.0.0.1:${port}`] } });
  try {
    for (let i = 0; i < 200; i++) await h.send(`held${i}@example.com`);
    const until = Date.now() + 10_000;
    while (h.delivery.pool.status()[0]!.state === 'up' && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1_000));
    const down = h.delivery.pool.status()[0]!;
    assert.equal(down.state, 'down');
    assert.equal(down.held, 200, 'all 200 held for the relay');
    assert.ok(down.nextProbeAt, 'with a next probe');
    assert.equal((await h.all()).filter((e) => e.type === 'deferred').length, 0, 'no copy deferred');
    for await (const rec of h.queue.records()) assert.equal(rec.meta.tries ?? 0, 0, 'no try charged');
    const metrics = await h.delivery.metrics.render(await h.delivery.status());
    assert.match(metrics, /postino_delivery_relay_up\{relay="[^"]+"\} 0/);
    assert.match(metrics, /postino_delivery_relay_held\{relay="[^"]+"\} 200/);
    const page = formatHostedStatus({ intake: 0, delivery: await h.delivery.status() });
    assert.match(page, /^relay smtp:\/\/127\.0\.0\.1:\d+ weight 1 sent 0 DOWN since \S+ \(.*ECONNREFUSED.*\), next probe in \d+ s, holding 200$/m, page);

    s = await sink([], port, dir);
    const t0 = Date.now();
    const evs = await h.waitFor((e) => e.filter((x) => x.type === 'delivered').length >= 200, 20_000);
    const secs = (Date.now() - t0) / 1000;
    console.log(`# engine relay down: 200 held copies delivered ${secs.toFixed(1)} s after the relay returned`);
    assert.equal(evs.filter((e) => e.type === 'delivered').length, 200);
    assert.ok(secs < 10, `within seconds (${secs.toFixed(1)} s)`);
    assert.equal(h.delivery.pool.status()[0]!.state, 'up');
  } finally {
    await h.close();
    await s.close();
  }
});

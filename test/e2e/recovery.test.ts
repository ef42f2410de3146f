/*
 * Recovery after crashes (issue #18), the whole relay on its DEFAULT retry
 * schedules: under load from 10 clients, SIGKILL the `postino up` process group
 * three times and restart it each time. `up` starts sink, hosted and forwarder
 * in that order, each once the one before listens, and an unreachable hop only
 * holds its queue; so the messages leased at each crash go out as soon as the
 * stack is back instead of waiting out a 5-minute retry.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { sleep } from '../helpers/forwarder.js';
import { startUp, tempDir, upConfig, type Running } from '../helpers/postino.js';
import { runPythonClients } from '../helpers/python-sender.js';
import { countDelivered } from '../helpers/sink-reader.js';

const KILLS = 3;
const CLIENTS = 10;

test(`SIGKILL of postino up ${KILLS} times under load from ${CLIENTS} clients: every acknowledged message delivered within 30 s of the last restart`, { timeout: 240_000 }, async () => {
  const dataDir = tempDir('recover-up');
  const { config, ports } = await upConfig();
  let up: Running = await startUp(dataDir, config);
  // Each client sends one message per connection and keeps going through the outages (bounded: 2,000 each).
  const clients = runPythonClients(CLIENTS, 'u', ['--port', String(ports.forwarder), '--count', '2000', '--error-pause-ms', '50']);
  let lastRestart = 0;
  try {
    for (let i = 0; i < 300 && clients.acked().length < 100; i++) await sleep(100); // the clients are under way
    const ackedAtKill: number[] = [];
    for (let i = 0; i < KILLS; i++) {
      await sleep(2_000 + Math.random() * 2_000);
      ackedAtKill.push(clients.acked().length);
      up.kill9();
      await up.exited;
      up = await startUp(dataDir, config);
      lastRestart = Date.now();
    }
    await sleep(1_000);
    await clients.stop();
    const acked = clients.acked();
    assert.ok(acked.length >= 200, `a real load: ${acked.length} acknowledged`);

    const { lost, duplicates, unacked } = await countDelivered(path.join(dataDir, 'sink'), acked, 60_000);
    const secs = (Date.now() - lastRestart) / 1000;
    console.log(
      `# recovery up: ${KILLS} SIGKILLs of the process group (acked at each: ${ackedAtKill.join(', ')}), ${acked.length} acknowledged by ${CLIENTS} clients; ` +
        `all delivered ${secs.toFixed(1)} s after the last restart; ${lost.length} lost, ${duplicates} duplicates, ${unacked} delivered without an ack`,
    );
    assert.deepEqual(lost, [], 'no acknowledged message lost');
    assert.ok(secs <= 30, `within 30 s of the last restart (${secs.toFixed(1)} s)`);
    const ready = up.lines.filter((l) => l.includes('"event":"ready"')).map((l) => (JSON.parse(l) as { role: string }).role);
    assert.deepEqual(ready, ['sink', 'hosted', 'forwarder'], 'each started once the one it sends to listens');
    const deferred = up.lines.filter((l) => l.includes('"event":"deferred"'));
    assert.deepEqual(deferred, [], 'no message deferred after the last restart');
  } finally {
    await clients.stop();
    await up.stop();
  }
});

/*
 * The log is as durable as the 250: SIGKILL the forwarder again and again while
 * 20 Python smtplib clients send, restart it on the same spool each time, and
 * every message a client got `250 … queued as <id>` for has its `accepted` line
 * with that queue id in what the killed processes wrote to stdout. With pino's
 * default destination (lines written through the thread pool, the ones logged
 * meanwhile held in memory) this test failed three runs out of three: 4, 8 and
 * 20 acknowledged messages without their line (common/log.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { forwarderConfig, sleep, startForwarderProcess, startTestSink } from '../helpers/forwarder.js';
import { tempDir, type Running } from '../helpers/postino.js';
import { runPythonClients } from '../helpers/python-sender.js';

const KILLS = 16;

/** Once the killed process's stdout is closed, every line it wrote is in `lines`. */
function outputRead(r: Running): Promise<void> {
  const out = r.child.stdout!;
  return new Promise((resolve) => (out.closed ? resolve() : out.once('close', () => resolve())));
}

test(`SIGKILL ${KILLS} times under load: every acknowledged message has its accepted log line`, { timeout: 120_000 }, async () => {
  const dataDir = tempDir('log-durability');
  const { sink } = await startTestSink(dataDir);
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${sink.port}`]);
  let fwd = await startForwarderProcess(dataDir, config);
  const clients = runPythonClients(20, 'ld', ['--port', String(ports.smtp), '--count', '1000000', '--error-pause-ms', '20']);
  const logged = new Set<string>();
  const collect = (r: Running): void => {
    for (const line of r.lines) if (line.includes('"event":"accepted"')) logged.add((JSON.parse(line) as { queueId: string }).queueId);
  };
  try {
    for (let i = 0; i < KILLS; i++) {
      await sleep(400 + Math.random() * 800);
      fwd.kill9();
      await fwd.exited;
      await outputRead(fwd);
      collect(fwd);
      fwd = await startForwarderProcess(dataDir, config);
    }
    await clients.stop();
    // The last process is stopped, not killed: what it acknowledged is checked too.
    await fwd.stop();
    await outputRead(fwd);
    collect(fwd);
    const acked = clients.senders.flatMap((s) => s.results.filter((r) => r.ok));
    assert.ok(acked.length >= 500, `a real load: ${acked.length} acknowledged`);
    const missing = acked.map((r) => /queued as (\S+)/.exec(r.reply ?? '')?.[1] ?? `(no queue id in "${r.reply}")`).filter((id) => !logged.has(id));
    console.log(`# log-durability: ${KILLS} kills, ${acked.length} acknowledged, ${logged.size} accepted lines, ${missing.length} acknowledged without one`);
    assert.deepEqual(missing, [], 'every acknowledged message has its accepted line');
  } finally {
    await clients.stop();
    await fwd.stop();
    await sink.close();
  }
});

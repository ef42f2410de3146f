/*
 * SIGKILL of the hosted node (`postino hosted`) during `postino recipients import`: after a restart on
 * the same data every entry is whole (its fields exactly as in the file: each
 * batch is one atomic LevelDB write), the import stopped part-way, and running
 * the same file again completes it (rows already in count as unchanged).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { until } from '../helpers/fake-clock.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { freePorts } from '../helpers/ports.js';
import { CLI, tempDir } from '../helpers/postino.js';

const ROWS = 50_000;

function cli(dataDir: string, args: string[]): { done: Promise<{ status: number | null; stdout: string; stderr: string }>; kill(): void } {
  const child = spawn(process.execPath, [CLI, 'recipients', ...args], { env: { ...process.env, POSTINO_DATA: dataDir } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return { done: new Promise((resolve) => child.on('exit', (status) => resolve({ status, stdout, stderr }))), kill: () => child.kill('SIGKILL') };
}

test('SIGKILL during an import leaves whole entries only; the same import again completes it', { timeout: 180_000 }, async () => {
  const dataDir = tempDir('recipients-kill');
  const [unusedSink] = await freePorts(1); // nothing is sent: no sink needed
  const { config } = await hostedConfig(unusedSink!);
  const api = `http://127.0.0.1:${(config.http as { port: number }).port}`;
  const file = path.join(dataDir, 'big.csv');
  const w = fs.createWriteStream(file);
  w.write('address,first_name,last_name,plan\n');
  const row = (i: number): string => `c${i}@kill.example,First${i},"Last, ${i}",plan-${i % 7}`;
  for (let i = 0; i < ROWS; i++) if (!w.write(row(i) + '\n')) await new Promise<void>((r) => w.once('drain', () => r()));
  await new Promise<void>((r) => w.end(() => r()));

  let up = await startHostedProcess(dataDir, config);
  const key = fs.readFileSync(path.join(dataDir, 'secrets', 'api-key'), 'utf8').trim();
  const get = (route: string): Promise<Response> => fetch(api + route, { headers: { authorization: `Bearer ${key}` } });
  try {
    const first = cli(dataDir, ['import', file, '--account', 'default', '--api', api]);
    // Kill as soon as the first batches are visible: the import is mid-way.
    await until(async () => (((await (await get('/api/recipients?account=default&limit=1')).json()) as { recipients: unknown[] }).recipients.length > 0), 'first batch imported', 60_000);
    up.kill9();
    await up.exited;
    const cut = await first.done;
    assert.notEqual(cut.status, 0, 'the CLI saw the import fail');

    up = await startHostedProcess(dataDir, config);
    const exported = (await (await get('/api/recipients/export?account=default&format=ndjson')).text()).trim().split('\n').filter(Boolean);
    assert.ok(exported.length > 0 && exported.length < ROWS, `stopped part-way (${exported.length} of ${ROWS})`);
    assert.equal(exported.length % 5_000, 0, `whole batches only (${exported.length})`);
    for (const line of exported) {
      const e = JSON.parse(line) as { address: string; fields: Record<string, string> };
      const i = Number(/^c(\d+)@/.exec(e.address)![1]);
      assert.deepEqual(e.fields, { first_name: `First${i}`, last_name: `Last, ${i}`, plan: `plan-${i % 7}` }, e.address);
    }

    const again = await cli(dataDir, ['import', file, '--account', 'default', '--api', api]).done;
    assert.equal(again.status, 0, again.stdout + again.stderr);
    const m = /^(\d+) rows in .*: created (\d+), updated (\d+), unchanged (\d+), rejected 0$/m.exec(again.stdout);
    assert.ok(m, again.stdout);
    assert.deepEqual([Number(m[1]), Number(m[2]) + Number(m[4]), Number(m[3])], [ROWS, ROWS, 0]);
    assert.equal(Number(m[4]), exported.length, 'rows that made it before the kill are unchanged');
    const all = (await (await get('/api/recipients/export?account=default')).text()).trim().split('\r\n');
    assert.equal(all.length, ROWS + 1);
  } finally {
    await up.stop();
  }
});

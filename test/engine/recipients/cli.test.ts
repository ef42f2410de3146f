/*
 * `postino recipients get|set|list|delete` (the built CLI as a user runs it)
 * against the recipient routes: fields set and removed, one line per entry,
 * exit 1 for an unknown address, bad usage exit 2; an import's progress on a
 * terminal (a pseudo-terminal from script(1)).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CLI } from '../../helpers/postino.js';
import { KEY, startRecipientsNode, type RecipientsNode } from './harness.js';

let n: RecipientsNode;

before(async () => {
  n = await startRecipientsNode();
});
after(async () => n.close());

function cli(args: string[], key = KEY): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'recipients', ...args, '--api', n.base], { env: { ...process.env, POSTINO_API_KEY: key, POSTINO_DATA: n.dir } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

test('set, get, list and delete through the CLI', async () => {
  let r = await cli(['set', 'ada@example.com', 'first_name=Ada', 'city=London', '--account', 'acme']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual((JSON.parse(r.stdout) as { fields: unknown }).fields, { first_name: 'Ada', city: 'London' });
  r = await cli(['set', 'ada@example.com', 'city=', '--account', 'acme']);
  assert.deepEqual((JSON.parse(r.stdout) as { fields: unknown }).fields, { first_name: 'Ada' }, 'name= removes the field');
  r = await cli(['get', 'ada@example.com'], 'key-acme');
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { address: string }).address, 'ada@example.com');
  r = await cli(['list'], 'key-acme');
  assert.equal(r.stdout, 'acme\tada@example.com\tsent=0\tfirst_name="Ada"\n');
  r = await cli(['set', 'ada@example.com', 'bad name=x', '--account', 'acme']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /HTTP 400 .*field name \\"bad name\\"/);
  r = await cli(['delete', 'ada@example.com'], 'key-acme');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^deleted ada@example.com: fields and history removed, suppression kept; events now show erased:[0-9a-f]{32}$/m);
  r = await cli(['get', 'ada@example.com'], 'key-acme');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no recipient ada@example.com/);
  r = await cli(['list'], 'key-acme');
  assert.equal(r.stdout, '');
  r = await cli(['set', 'ada@example.com', '--account', 'acme']);
  assert.equal(r.status, 2, 'no field given: usage');
  r = await cli(['import', 'x.csv', '--format', 'xml']);
  assert.equal(r.status, 2);
});

test('import on a terminal shows its progress while the rows come, then the summary', { skip: spawnSync('script', ['--version']).status !== 0 && 'no script(1) for a pseudo-terminal' }, async () => {
  // A FIFO as the file: the rows come when the test writes them, so the import lasts as long as the test wants.
  const fifo = path.join(n.dir, 'rows.csv');
  spawnSync('mkfifo', [fifo]);
  const cmd = [process.execPath, CLI, 'recipients', 'import', fifo, '--account', 'acme', '--api', n.base].map((a) => `'${a}'`).join(' ');
  const child = spawn('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, POSTINO_API_KEY: KEY } });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const w = fs.createWriteStream(fifo);
  w.write('address,first_name\n');
  for (let i = 0; i < 1000; i++) w.write(`tty${i}@example.com,T${i}\n`);
  const deadline = Date.now() + 30_000;
  while (!out.includes('importing: ') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.match(out, /importing: 0\.0 MB, \d+ s/, 'a progress line while the import runs');
  w.end('last@example.com,L\n');
  assert.equal(await exited, 0, out);
  assert.match(out, /1001 rows in .*: created 1001, updated 0, unchanged 0, rejected 0/);
});

/*
 * `postino recipients get|set|list|delete` (the built CLI as a user runs it)
 * against the recipient routes: fields set and removed, one line per entry,
 * exit 1 for an unknown address, bad usage exit 2.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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

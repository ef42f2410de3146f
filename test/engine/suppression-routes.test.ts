/*
 * The suppression list over the hosted API and through `postino suppress`
 * (the built CLI as a user runs it): add, list with paging, remove, CSV
 * import with rejected rows named by line, export, and the errors a user
 * gets for bad input.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createHttpServer, listenHttp } from '../../common/http-server.js';
import { createLogger } from '../../common/log.js';
import { Store } from '../../common/store.js';
import { registerSuppressionRoutes } from '../../engine/suppression-routes.js';
import { LevelSuppressionList, type SuppressionList } from '../../engine/suppression.js';
import { CLI, tempDir } from '../helpers/postino.js';

const KEY = 'k'.repeat(43);
let dir: string;
let store: Store;
let suppression: SuppressionList;
let base: string;
let close: () => Promise<void>;

before(async () => {
  dir = tempDir('suppress');
  store = await Store.open(path.join(dir, 'hosted'));
  suppression = new LevelSuppressionList(store);
  const log = createLogger('test', 'silent');
  const app = createHttpServer(KEY, log);
  registerSuppressionRoutes(app, { store, suppression, accounts: ['acme', 'other'] });
  base = `http://127.0.0.1:${await listenHttp(app, { host: '127.0.0.1', port: 0, what: 'test', log })}`;
  close = async () => {
    await app.close();
    await store.close();
  };
});
after(async () => close());

function cli(args: string[], stdin?: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'suppress', ...args, '--api', base], { env: { ...process.env, POSTINO_API_KEY: KEY, POSTINO_DATA: dir } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

const api = (route: string, init: RequestInit = {}): Promise<Response> => fetch(base + route, { ...init, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });

test('postino suppress add, list and remove; the entry says why and when', async () => {
  let r = await cli(['add', 'Ada@Example.COM', '--account', 'acme']);
  assert.equal(r.status, 0, r.stderr);
  r = await cli(['add', 'ada@example.com', '--account', 'acme', '--scope', 'list:news', '--reason', 'unsubscribe']);
  assert.equal(r.status, 0, r.stderr);
  r = await cli(['list', '--account', 'acme']);
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.trim().split('\n').map((l) => l.split('\t'));
  assert.deepEqual(
    rows.map((x) => x.slice(0, 4)),
    [
      ['acme', 'Ada@example.com', '*', 'manual'],
      ['acme', 'ada@example.com', 'list:news', 'unsubscribe'],
    ],
    'the domain is lower-cased, the local part kept (RFC 5321 2.4)',
  );
  assert.ok(!Number.isNaN(Date.parse(rows[0]![4]!)));
  assert.equal((await cli(['remove', 'Ada@example.com', '--account', 'acme'])).status, 0);
  const again = await cli(['remove', 'Ada@example.com', '--account', 'acme']);
  assert.equal(again.status, 1, 'removing what is not there says so');
  assert.match(again.stdout, /was not suppressed/);
});

test('bad input gets a clear error and changes nothing', async () => {
  for (const [body, msg] of [
    [{ account: 'acme', address: 'not-an-address' }, /not an address/],
    [{ account: 'nobody', address: 'a@example.com' }, /unknown account "nobody"/],
    [{ address: 'a@example.com' }, /account is required/],
    [{ account: 'acme', address: 'a@example.com', scope: 'everything' }, /scope is/],
    [{ account: 'acme', address: 'a@example.com', reason: 'because' }, /reason is one of/],
    [[{ account: 'acme', address: 'ok@example.com' }, { account: 'acme', address: 'x y@example.com' }], /item 1: x y@example\.com: contains a space/],
  ] as const) {
    const res = await api('/api/suppressions', { method: 'POST', body: JSON.stringify(body) });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { error: string }).error, msg);
  }
  assert.equal(await suppression.get('acme', 'ok@example.com'), undefined, 'a batch with one bad item stores none');
  assert.equal((await fetch(`${base}/api/suppressions`)).status, 401, 'the API key is required');
  const r = await cli(['add', 'a@example.com']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--account is required/);
});

test('import: 20,000 rows streamed from stdin, a header row skipped, bad rows named by line; export gives them back', async () => {
  const lines = ['email,scope,detail'];
  for (let i = 0; i < 20_000; i++) lines.push(i === 500 ? 'broken-row' : i === 900 ? '"user900@Import.Example"' : `user${i}@Import.Example`);
  lines.push('"never closed@example.com');
  const r = await cli(['import', '-', '--account', 'other'], lines.join('\n') + '\n');
  assert.equal(r.status, 1, 'rejected rows make the exit status 1');
  assert.match(r.stdout, /^imported 19999 in [\d.]+ s \(\d+\/s\); rejected 2$/m);
  assert.match(r.stdout, /line 502: broken-row: not an address/);
  assert.match(r.stdout, /line 20002: a quoted field is never closed/);
  assert.equal((await suppression.get('other', 'user19999@import.example'))?.reason, 'manual');
  assert.equal((await suppression.get('other', 'user900@import.example'))?.reason, 'manual', 'a quoted field');

  const out = path.join(dir, 'export.csv');
  const e = await cli(['export', '--account', 'other', '--out', out]);
  assert.equal(e.status, 0, e.stderr);
  const csv = fs.readFileSync(out, 'utf8').trimEnd().split('\r\n');
  assert.equal(csv[0], 'account,address,scope,reason,at,detail,queueId');
  assert.equal(csv.length, 1 + 19_999);
  assert.ok(csv.includes(`other,user7@import.example,*,manual,${csv[1]!.split(',')[4]},import,`));

  // Paging: every entry once, in order, with `next` until the end.
  const seen: string[] = [];
  let after: string | null = '';
  while (after !== null) {
    const page = (await (await api(`/api/suppressions?account=other&limit=7000&after=${encodeURIComponent(after)}`)).json()) as { suppressions: Array<{ address: string }>; next: string | null };
    seen.push(...page.suppressions.map((s) => s.address));
    after = page.next;
  }
  assert.equal(seen.length, 19_999);
  assert.equal(new Set(seen).size, 19_999);
});

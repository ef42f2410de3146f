/*
 * Recipient imports over the API: CSV and NDJSON, each bad row reported by
 * line with its reason while the good ones go in (wrong column count, bad
 * address, bad value, a 10 MB line, an unclosed quote), a bad header refusing
 * the whole file, re-running an import changing nothing, and the CSV export
 * reading back as what was imported.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Readable } from 'node:stream';
import { readCsvRecords } from '../../../common/csv.js';
import type { ImportSummary } from '../../../engine/recipients/import.js';
import { startRecipientsNode, type RecipientsNode } from './harness.js';

let n: RecipientsNode;

before(async () => {
  n = await startRecipientsNode();
});
after(async () => n.close());

async function importText(text: string, account: string, format: 'csv' | 'ndjson' = 'csv'): Promise<{ status: number; body: ImportSummary & { error?: string } }> {
  const r = await n.api(`/api/recipients/import?account=${account}`, { method: 'POST', raw: text, contentType: format === 'csv' ? 'text/csv' : 'application/x-ndjson' });
  return { status: r.status, body: (await r.json()) as ImportSummary & { error?: string } };
}

test('the CSV reader skips an over-long line without holding it and goes on', async () => {
  const long = 'x'.repeat(10 * 1024 * 1024);
  const chunks = ['a,b\r\n', `${long.slice(0, 5_000_000)}`, `${long.slice(5_000_000)}\n`, 'c,"d\ne"\n', '"open\n'];
  const out = [];
  for await (const r of readCsvRecords(Readable.from(chunks.map((c) => Buffer.from(c))), 1000)) out.push(r);
  assert.deepEqual(out, [
    { line: 1, fields: ['a', 'b'] },
    { line: 2, error: 'record longer than 1000 characters' },
    { line: 3, fields: ['c', 'd\ne'] },
    { line: 5, error: 'a quoted field is never closed' },
  ]);
});

test('the CSV reader gives the same records whatever the chunking (CRLF, a quoted line break, UTF-8 split across chunks)', async () => {
  const text = '\ufeffaddress,name\r\nzoe@example.com,"Zoë\r\n""Z"""\r\n\r\nbob@example.com,Bob\nlast@example.com,Ünal';
  const whole = [];
  for await (const r of readCsvRecords(Readable.from([Buffer.from(text)]))) whole.push(r);
  assert.deepEqual(whole, [
    { line: 1, fields: ['address', 'name'] },
    { line: 2, fields: ['zoe@example.com', 'Zoë\n"Z"'] },
    { line: 5, fields: ['bob@example.com', 'Bob'] },
    { line: 6, fields: ['last@example.com', 'Ünal'] },
  ]);
  const bytes = Buffer.from(text);
  for (const size of [1, 2, 3, 7]) {
    const chunks = [];
    for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
    const got = [];
    for await (const r of readCsvRecords(Readable.from(chunks))) got.push(r);
    assert.deepEqual(got, whole, `chunks of ${size}`);
  }
});

test('a bad CSV: each bad row reported by line and reason, the good ones imported', async () => {
  const lines = [
    'address,first_name,city', // 1
    'ada@example.com,Ada,London', // 2
    'bob@example.com,Bob', // 3: two columns
    'not-an-address,X,Y', // 4
    `carl@example.com,${'C'.repeat(10 * 1024 * 1024)},Rome`, // 5: a 10 MB line
    'dora@example.com,"Dora, the explorer",', // 6: a quoted comma, empty city not set
    '', // 7: blank, skipped
    'eve@example.com,Eve,Paris,extra', // 8: four columns
    'fay@Example.ORG,Fay,"Oslo"', // 9
  ];
  const { status, body } = await importText(lines.join('\n') + '\n', 'acme');
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.created, 3);
  assert.equal(body.rejectedCount, 4);
  assert.deepEqual(
    body.rejected.map((r) => r.line),
    [3, 4, 5, 8],
  );
  assert.match(body.rejected[0]!.reason, /2 columns; the header has 3/);
  assert.match(body.rejected[1]!.reason, /not-an-address: not an address/);
  assert.match(body.rejected[2]!.reason, /longer than 65536/);
  assert.match(body.rejected[3]!.reason, /4 columns; the header has 3/);
  const dora = (await (await n.api('/api/recipients/dora@example.com?account=acme')).json()) as { fields: Record<string, string> };
  assert.deepEqual(dora.fields, { first_name: 'Dora, the explorer' });
  assert.equal((await n.api('/api/recipients/fay@example.org?account=acme')).status, 200);
  assert.equal((await n.api('/api/recipients/bob@example.com?account=acme')).status, 404);
});

test('a bad header refuses the whole import with the column and reason; nothing stored', async () => {
  for (const [header, re] of [
    ['address,first name', /line 1 \(header\), column 2: field name "first name"/],
    ['address,a,a', /column 3: field "a" appears twice/],
    ['name,address', /the first column is "address"/],
  ] as const) {
    const { status, body } = await importText(`${header}\nzed@example.com,x\n`, 'acme');
    assert.equal(status, 400);
    assert.match(body.error!, re);
  }
  assert.equal((await n.api('/api/recipients/zed@example.com?account=acme')).status, 404);
  assert.equal((await importText('', 'acme')).status, 400);
});

test('import is idempotent: the same file again is all unchanged; a changed value is an update', async () => {
  const rows = ['address,plan', ...Array.from({ length: 120 }, (_, i) => `p${i}@plans.example,basic`)].join('\n');
  let r = await importText(rows, 'other');
  assert.deepEqual([r.body.created, r.body.updated, r.body.unchanged], [120, 0, 0]);
  r = await importText(rows, 'other');
  assert.deepEqual([r.body.created, r.body.updated, r.body.unchanged], [0, 0, 120]);
  r = await importText('address,plan\np1@plans.example,pro\np1@plans.example,pro\n', 'other');
  assert.deepEqual([r.body.created, r.body.updated, r.body.unchanged], [0, 1, 1], 'the same address twice in one batch');
});

test('NDJSON import reads what the NDJSON export writes; CSV export reads back as imported', async () => {
  const nd = [
    JSON.stringify({ address: 'nd1@nd.example', fields: { first_name: 'Nia', coupon: 'X1' } }),
    JSON.stringify({ address: 'nd2@nd.example' }),
    JSON.stringify({ address: 'nd3@nd.example', fields: { 'bad name': 'x' } }),
    JSON.stringify({ address: 'nd4@nd.example', first_name: 'flat' }),
    '{not json',
    JSON.stringify({ address: 'nd5@nd.example', fields: { first_name: 'Quote "and", comma\nnewline' }, sent: 3, lists: ['x'] }),
  ].join('\n');
  const r = await importText(nd, 'other', 'ndjson');
  assert.equal(r.status, 200);
  assert.equal(r.body.created, 3);
  assert.deepEqual(r.body.rejected.map((x) => x.line), [3, 4, 5]);
  assert.match(r.body.rejected[0]!.reason, /field name "bad name"/);
  assert.match(r.body.rejected[1]!.reason, /unknown key "first_name" \(fields go in "fields"\)/);
  const exported = await (await n.api('/api/recipients/export?account=other&format=ndjson')).text();
  const back = exported.trim().split('\n').map((l) => JSON.parse(l) as { address: string; fields: Record<string, string>; account: string });
  assert.ok(back.every((b) => b.account === 'other'));
  assert.deepEqual(back.find((b) => b.address === 'nd5@nd.example')!.fields, { first_name: 'Quote "and", comma\nnewline' });
  // NDJSON export into another account: everything lands, nothing rejected.
  const again = await importText(exported, 'acme', 'ndjson');
  assert.equal(again.body.rejectedCount, 0);
  // CSV export → import into a third place is a no-op on the same account.
  const csv = await (await n.api('/api/recipients/export?account=other')).text();
  assert.match(csv.split('\r\n')[0]!, /^address,coupon,first_name,plan$/);
  const re = await importText(csv, 'other');
  assert.equal(re.body.rejectedCount, 0, JSON.stringify(re.body.rejected));
  assert.equal(re.body.created + re.body.updated, 0);
  assert.equal((await n.api('/api/recipients/export')).status, 400, 'CSV export needs one account');
});

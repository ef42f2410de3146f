/*
 * recipients-command.ts — `postino recipients get|set|delete|list|import|export`,
 * through the hosted API (engine/recipients/routes.ts), with the API key from
 * $POSTINO_API_KEY or <data>/secrets/api-key. `--account` may be left out with
 * an account's key; the node key needs it for anything but list and NDJSON export.
 *
 *   postino recipients get <address> [--account A]             the entry as JSON
 *   postino recipients set <address> name=value… [--account A] sets fields (name= removes one)
 *   postino recipients delete <address> [--account A]          privacy delete
 *   postino recipients list [--account A] [--limit N]          one entry per line
 *   postino recipients import <file|-> [--account A] [--format csv|ndjson]
 *                              streamed; progress on a terminal, a summary at the end
 *   postino recipients export [--account A] [--format csv|ndjson] [--out F]
 * Exit status 1 when an import rejected rows or the address is unknown.
 */
import fs from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ImportSummary } from '../engine/recipients/import.js';
import { apiCall, apiFetch, apiTarget, apiUrl, HOSTED_API, pagedList } from './api-client.js';
import { UsageError } from './cli-support.js';

export interface RecipientsArgs {
  sub: string | undefined;
  arg: string | undefined;
  /** `set`'s name=value pairs. */
  rest: string[];
  account?: string | undefined;
  limit?: string | undefined;
  out?: string | undefined;
  format?: string | undefined;
  api?: string | undefined;
}

type Summary = ImportSummary;

interface Entry {
  account: string;
  address: string;
  fields: Record<string, string>;
  sent: number;
  suppressed: boolean;
}

/** How often the import's progress line is redrawn on a terminal. */
const PROGRESS_MS = 250;

function need(v: string | undefined, what: string): string {
  if (!v) throw new UsageError(`postino recipients: ${what} is required`);
  return v;
}

function format(v: string | undefined): 'csv' | 'ndjson' | undefined {
  if (v !== undefined && v !== 'csv' && v !== 'ndjson') throw new UsageError('--format is csv or ndjson');
  return v;
}

/** `name=value` pairs as a PATCH body; `name=` removes the field. */
export function fieldArgs(pairs: readonly string[]): Record<string, string | null> {
  if (pairs.length === 0) throw new UsageError('postino recipients set <address> name=value…: give at least one field');
  const out: Record<string, string | null> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`"${p}" is not name=value`);
    const v = p.slice(eq + 1);
    out[p.slice(0, eq)] = v === '' ? null : v;
  }
  return out;
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

export async function recipientsCommand(a: RecipientsArgs, env: NodeJS.ProcessEnv): Promise<void> {
  const t = apiTarget(HOSTED_API, a.api, env);
  const url = (route: string, q: Record<string, string | undefined> = {}): URL => apiUrl(t, route, q);
  const one = (address: string): URL => url(`/api/recipients/${encodeURIComponent(address)}`, { account: a.account });
  switch (a.sub) {
    case 'get': {
      const address = need(a.arg, 'an address');
      const res = await fetch(one(address), { headers: { authorization: `Bearer ${t.token}` } });
      if (res.status === 404) {
        process.stderr.write(`postino: no recipient ${address}\n`);
        process.exitCode = 1;
        return;
      }
      if (!res.ok) throw new Error(`${t.base}: HTTP ${res.status} ${await res.text()}`);
      process.stdout.write(JSON.stringify(await res.json(), null, 2) + '\n');
      return;
    }
    case 'set': {
      const address = need(a.arg, 'an address');
      const r = await apiCall(t, 'PATCH', one(address), { fields: fieldArgs(a.rest) });
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      return;
    }
    case 'delete': {
      const address = need(a.arg, 'an address');
      const res = await fetch(one(address), { method: 'DELETE', headers: { authorization: `Bearer ${t.token}` } });
      if (res.status === 404) {
        process.stderr.write(`postino: no recipient ${address}\n`);
        process.exitCode = 1;
        return;
      }
      if (!res.ok) throw new Error(`${t.base}: HTTP ${res.status} ${await res.text()}`);
      const r = (await res.json()) as { recipient: string };
      process.stdout.write(`deleted ${address}: fields and history removed, suppression kept; events now show ${r.recipient}\n`);
      return;
    }
    case 'list': {
      for await (const e of pagedList<Entry>(t, '/api/recipients', 'recipients', { account: a.account }, a.limit ? Number(a.limit) : Infinity)) {
        const fields = Object.entries(e.fields).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
        process.stdout.write(`${e.account}\t${e.address}\tsent=${e.sent}${e.suppressed ? '\tsuppressed' : ''}${fields ? `\t${fields}` : ''}\n`);
      }
      return;
    }
    case 'import': {
      const file = need(a.arg, 'a CSV or NDJSON file (or - for stdin)');
      const fmt = format(a.format) ?? (/\.(nd)?jsonl?$/i.test(file) ? 'ndjson' : 'csv');
      const total = file === '-' ? undefined : fs.statSync(file).size;
      const input = file === '-' ? process.stdin : fs.createReadStream(file, { highWaterMark: 1 << 20 });
      let sent = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, done) {
          sent += chunk.length;
          done(null, chunk);
        },
      });
      const started = Date.now();
      const tty = process.stderr.isTTY === true;
      const progress = tty
        ? setInterval(() => {
            const s = (Date.now() - started) / 1000;
            process.stderr.write(`\rimporting: ${mb(sent)} MB${total ? ` of ${mb(total)} MB (${Math.floor((100 * sent) / Math.max(total, 1))}%)` : ''}, ${s.toFixed(0)} s  `);
          }, PROGRESS_MS)
        : undefined;
      let r: Summary;
      try {
        const body = Readable.toWeb(input.pipe(counter)) as ReadableStream;
        const res = await apiFetch(t, 'POST', url('/api/recipients/import', { account: a.account, format: fmt }), { body, contentType: fmt === 'csv' ? 'text/csv' : 'application/x-ndjson' });
        r = (await res.json()) as Summary;
      } finally {
        clearInterval(progress);
        if (tty) process.stderr.write('\n');
      }
      const s = (Date.now() - started) / 1000;
      process.stdout.write(
        `${r.rows} rows in ${s.toFixed(1)} s (${Math.round(r.rows / Math.max(s, 0.001))}/s): created ${r.created}, updated ${r.updated}, unchanged ${r.unchanged}, rejected ${r.rejectedCount}\n`,
      );
      for (const x of r.rejected) process.stdout.write(`  line ${x.line}: ${x.reason}\n`);
      if (r.rejectedCount > r.rejected.length) process.stdout.write(`  … and ${r.rejectedCount - r.rejected.length} more\n`);
      if (r.rejectedCount) process.exitCode = 1;
      return;
    }
    case 'export': {
      const res = await apiFetch(t, 'GET', url('/api/recipients/export', { account: a.account, format: format(a.format) }));
      const out = a.out ? fs.createWriteStream(a.out) : process.stdout;
      await pipeline(Readable.fromWeb(res.body! as Parameters<typeof Readable.fromWeb>[0]), out);
      return;
    }
    default:
      throw new UsageError('usage: postino recipients get|set|delete|list|import|export …');
  }
}

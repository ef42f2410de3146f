/*
 * suppress-command.ts — `postino suppress add|remove|list|import|export`,
 * through the hosted API (engine/suppression-routes.ts), with the API key
 * from $POSTINO_API_KEY or <data>/secrets/api-key.
 *
 *   postino suppress add <address> --account A [--scope list:NAME] [--reason R]
 *   postino suppress remove <address> --account A [--scope list:NAME]
 *   postino suppress list [--account A] [--limit N]        one entry per line
 *   postino suppress import <file.csv|-> --account A        streamed; a summary at the end
 *   postino suppress export [--account A] [--out F]        CSV with a header row
 */
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { apiCall, apiFetch, apiTarget, apiUrl, HOSTED_API, pagedList } from './api-client.js';
import { UsageError } from './cli-support.js';

export interface SuppressArgs {
  sub: string | undefined;
  arg: string | undefined;
  account?: string | undefined;
  scope?: string | undefined;
  reason?: string | undefined;
  limit?: string | undefined;
  out?: string | undefined;
  api?: string | undefined;
}

interface Entry {
  account: string;
  address: string;
  scope: string;
  reason: string;
  at: string;
  detail?: string;
}

function need(v: string | undefined, what: string): string {
  if (!v) throw new UsageError(`postino suppress: ${what} is required`);
  return v;
}

export async function suppressCommand(a: SuppressArgs, env: NodeJS.ProcessEnv): Promise<void> {
  const t = apiTarget(HOSTED_API, a.api, env);
  const url = (route: string, q: Record<string, string | undefined>): URL => apiUrl(t, route, q);
  switch (a.sub) {
    case 'add': {
      const address = need(a.arg, 'an address');
      await apiCall(t, 'POST', '/api/suppressions', { account: need(a.account, '--account'), address, scope: a.scope, reason: a.reason });
      process.stdout.write(`suppressed ${address} (${a.account}, ${a.scope ?? '*'})\n`);
      return;
    }
    case 'remove': {
      const address = need(a.arg, 'an address');
      const r = await apiCall<{ removed: boolean }>(t, 'DELETE', url('/api/suppressions', { account: need(a.account, '--account'), address, scope: a.scope }));
      process.stdout.write(r.removed ? `removed ${address}\n` : `${address} was not suppressed (${a.scope ?? '*'})\n`);
      if (!r.removed) process.exitCode = 1;
      return;
    }
    case 'list': {
      for await (const e of pagedList<Entry>(t, '/api/suppressions', 'suppressions', { account: a.account }, a.limit ? Number(a.limit) : Infinity))
        process.stdout.write(`${e.account}\t${e.address}\t${e.scope}\t${e.reason}\t${e.at}${e.detail ? `\t${e.detail}` : ''}\n`);
      return;
    }
    case 'import': {
      const file = need(a.arg, 'a CSV file (or - for stdin)');
      const input = file === '-' ? process.stdin : fs.createReadStream(file);
      const started = Date.now();
      const res = await apiFetch(t, 'POST', url('/api/suppressions/import', { account: need(a.account, '--account'), reason: a.reason }), { body: Readable.toWeb(input) as ReadableStream, contentType: 'text/csv' });
      const r = (await res.json()) as { imported: number; rejectedCount: number; rejected: Array<{ line: number; reason: string }> };
      const s = (Date.now() - started) / 1000;
      process.stdout.write(`imported ${r.imported} in ${s.toFixed(1)} s (${Math.round(r.imported / Math.max(s, 0.001))}/s); rejected ${r.rejectedCount}\n`);
      for (const x of r.rejected) process.stdout.write(`  line ${x.line}: ${x.reason}\n`);
      if (r.rejectedCount > r.rejected.length) process.stdout.write(`  … and ${r.rejectedCount - r.rejected.length} more\n`);
      if (r.rejectedCount) process.exitCode = 1;
      return;
    }
    case 'export': {
      const res = await apiFetch(t, 'GET', url('/api/suppressions/export', { account: a.account }));
      const out = a.out ? fs.createWriteStream(a.out) : process.stdout;
      await pipeline(Readable.fromWeb(res.body! as Parameters<typeof Readable.fromWeb>[0]), out);
      return;
    }
    default:
      throw new UsageError('usage: postino suppress add|remove|list|import|export …');
  }
}

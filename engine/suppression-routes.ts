/*
 * suppression-routes.ts — the suppression list over the hosted API (bearer
 * API key), for the customer's CRM and for `postino suppress`. An account's
 * key works on its own account only (`account` may be left out):
 *
 *   GET    /api/suppressions?account=&reason=&scope=&after=&limit=
 *          → {"suppressions": [...], "next": "<cursor>" | null}; page with after=<next>
 *   POST   /api/suppressions   {account, address, scope?, reason?, detail?} (or an array)
 *   DELETE /api/suppressions?account=&address=&scope=   (scope default `*`)
 *   POST   /api/suppressions/import?account=&reason=   text/csv, streamed: one address per
 *          row (columns address[,scope[,detail]]; a header row is skipped); answers
 *          {imported, rejected: [{line, reason}], rejectedCount}
 *   GET    /api/suppressions/export?account=   text/csv with a header row, streamed
 *
 * Every entry records why it is there (reason, detail, the copy that caused
 * it) and when. Imports are written in batches of IMPORT_BATCH (one statement
 * each with PostgreSQL) and one synced batch at the end, so an import of a
 * million rows takes seconds and is durable when the answer comes.
 * Side effects: reads and writes of the suppression list's backend (suppression.ts); LevelDB.
 */
import { Readable } from 'node:stream';
import { splitAddress } from '../common/address.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { csvRow, readCsv } from '../common/csv.js';
import { PostinoError } from '../common/errors.js';
import { accountParam, type KnownAccounts } from '../common/http-server.js';
import type { BatchOp, Store } from '../common/store.js';
import type { NewSuppression, SuppressionEntry, SuppressionList, SuppressionReason } from './suppression.js';

const MAX_LIMIT = 10_000;
const DEFAULT_LIMIT = 1_000;
/** Rows per LevelDB batch during an import (unsynced; one synced batch ends the import). */
const IMPORT_BATCH = 10_000;
/** Rejected rows listed one by one in the answer; the rest are only counted. */
const MAX_REJECTED_LISTED = 1_000;
/** RFC 5321 4.5.3.1.3: a path is at most 256 octets, so an address at most 254. */
const MAX_ADDRESS = 254;
export const SUPPRESSION_REASONS: readonly SuppressionReason[] = ['hard-bounce', 'soft-bounces', 'complaint', 'unsubscribe', 'manual'];
const EXPORT_COLUMNS = ['account', 'address', 'scope', 'reason', 'at', 'detail', 'queueId'] as const;

/** Why an address is not one we can store, or undefined. */
export function addressProblem(address: string): string | undefined {
  if (address.length > MAX_ADDRESS) return `longer than ${MAX_ADDRESS} characters`;
  const parts = splitAddress(address);
  if (!parts?.local || !parts.domain) return 'not an address (local@domain)';
  if (/[\s<>,;]/.test(address)) return 'contains a space or one of < > , ;';
  if (!/^[A-Za-z0-9.-]+$|^\[[0-9a-fA-F.:]+\]$/.test(parts.domain) && !/^[^\x00-\x7f]/.test(parts.domain)) return 'the domain is not a host name';
  return undefined;
}

function scopeProblem(scope: string): string | undefined {
  return scope === '*' || /^list:[^\r\n]{1,200}$/.test(scope) ? undefined : 'scope is "*" or "list:<name>"';
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** What the shared operations below need; the API routes and the dashboard both call them. */
export interface SuppressionStore {
  store: Store;
  suppression: SuppressionList;
}

export interface SuppressionRouteOptions extends SuppressionStore {
  accounts: KnownAccounts;
}

export interface SuppressionQuery {
  /** undefined = every account (the node's view). */
  account?: string | undefined;
  reason?: string | undefined;
  scope?: string | undefined;
  /** Exactly this address (case-insensitive). */
  address?: string | undefined;
  /** Addresses containing this text (case-insensitive): the dashboard's search box. */
  contains?: string | undefined;
  after?: string | undefined;
  limit: number;
}

/** One page of entries in key order; `next` is the cursor of the page after, or null. */
export async function listSuppressions(o: SuppressionStore, q: SuppressionQuery): Promise<{ suppressions: Array<SuppressionEntry & { account: string }>; next: string | null }> {
  const address = q.address?.toLowerCase();
  const contains = q.contains?.toLowerCase();
  const out: Array<SuppressionEntry & { account: string }> = [];
  let next: string | null = null;
  for await (const e of o.suppression.entries({ account: q.account, after: q.after })) {
    const a = e.address.toLowerCase();
    if ((q.reason && e.reason !== q.reason) || (q.scope && e.scope !== q.scope) || (address && a !== address) || (contains && !a.includes(contains))) continue;
    const { cursor, ...entry } = e;
    out.push(entry);
    if (out.length >= q.limit) {
      next = cursor;
      break;
    }
  }
  return { suppressions: out, next };
}

export interface SuppressionInput {
  account: string;
  address: string;
  scope?: string | undefined;
  reason?: string | undefined;
  detail?: string | undefined;
}

/** Validates every item first (BAD_REQUEST naming the bad one), then writes all in one synced batch. */
export async function addSuppressions(o: SuppressionStore, items: readonly SuppressionInput[]): Promise<number> {
  const entries: Array<{ account: string; e: NewSuppression }> = [];
  const at = new Date().toISOString();
  items.forEach((b, i) => {
    const address = b.address;
    const scope = b.scope ?? '*';
    const reason = (b.reason ?? 'manual') as SuppressionReason;
    const problem = addressProblem(address) ?? scopeProblem(scope) ?? (SUPPRESSION_REASONS.includes(reason) ? undefined : `reason is one of ${SUPPRESSION_REASONS.join(', ')}`);
    if (problem) throw new PostinoError('BAD_REQUEST', `${items.length > 1 ? `item ${i}: ` : ''}${address || '(no address)'}: ${problem}`);
    entries.push({ account: b.account, e: { address, scope, reason, detail: b.detail, at } });
  });
  // One addOps per account (one round trip to a shared backend), then one synced batch.
  const ops: BatchOp[] = [];
  for (const account of new Set(entries.map((x) => x.account))) ops.push(...(await o.suppression.addOps(account, entries.filter((x) => x.account === account).map((x) => x.e))));
  await o.store.commit(ops, { sync: true });
  return items.length;
}

/** True when the entry was there (and is now gone). */
export async function removeSuppression(o: SuppressionStore, account: string, address: string, scope = '*'): Promise<boolean> {
  return o.suppression.remove(account, address, scope);
}

export interface ImportResult {
  imported: number;
  rejectedCount: number;
  rejected: Array<{ line: number; reason: string }>;
}

/**
 * Reads rows `address[,scope[,detail]]` (a header row is skipped) from a stream and
 * stores them: batches of IMPORT_BATCH unsynced, one synced batch at the end.
 */
export async function importSuppressionCsv(o: SuppressionStore, acct: string, reasonGiven: string | undefined, input: Readable): Promise<ImportResult> {
  const reason = (reasonGiven ?? 'manual') as SuppressionReason;
  if (!SUPPRESSION_REASONS.includes(reason)) throw new PostinoError('BAD_REQUEST', `reason is one of ${SUPPRESSION_REASONS.join(', ')}`);
  const at = new Date().toISOString();
  let imported = 0;
  let rejectedCount = 0;
  const rejected: Array<{ line: number; reason: string }> = [];
  let ops: BatchOp[] = [];
  let batch: NewSuppression[] = [];
  const reject = (line: number, why: string): void => {
    rejectedCount++;
    if (rejected.length < MAX_REJECTED_LISTED) rejected.push({ line, reason: why });
  };
  try {
    for await (const r of readCsv(input)) {
      const [address = '', scopeField = '', detail = ''] = r.fields.map((f) => f.trim());
      if (r.line === 1 && /^(e-?mail|address)$/i.test(address)) continue; // a header row
      const sc = scopeField || '*';
      const problem = addressProblem(address) ?? scopeProblem(sc);
      if (problem) {
        reject(r.line, `${address || '(empty)'}: ${problem}`);
        continue;
      }
      batch.push({ address, scope: sc, reason, detail: detail || 'import', at });
      imported++;
      if (batch.length >= IMPORT_BATCH) {
        ops = await o.suppression.addOps(acct, batch);
        batch = [];
        if (ops.length) await o.store.commit(ops, { sync: false });
        ops = [];
      }
    }
  } catch (e) {
    // What was read so far is stored (and synced below); the answer says where it stopped.
    reject((e as { line?: number }).line ?? 0, (e as Error).message);
  }
  ops = await o.suppression.addOps(acct, batch);
  // One synced write makes the unsynced batches before it durable too (LevelDB has one log).
  ops.push({ type: 'put', key: 'meta!last-suppression-import', value: Buffer.from(at) });
  await o.store.commit(ops, { sync: true });
  return { imported, rejectedCount, rejected };
}

/** The list as CSV with a header row, streamed in chunks of about 64 KiB. */
export function suppressionCsv(o: SuppressionStore, acct: string | undefined): Readable {
  async function* rows(): AsyncGenerator<string> {
    yield csvRow(EXPORT_COLUMNS);
    let chunk = '';
    for await (const e of o.suppression.entries({ account: acct })) {
      chunk += csvRow([e.account, e.address, e.scope, e.reason, e.at, e.detail, e.queueId]);
      if (chunk.length >= 64 * 1024) {
        yield chunk;
        chunk = '';
      }
    }
    if (chunk) yield chunk;
  }
  return Readable.from(rows());
}

export function registerSuppressionRoutes(app: FastifyInstance, o: SuppressionRouteOptions): void {
  /** The account named (or, for an account key, its own); another account's is 403. */
  const account = (req: FastifyRequest, v: unknown, required: boolean): string | undefined => accountParam(req, v, o.accounts, required);

  app.get('/api/suppressions', async (req) => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    const acct = account(req, q.account, false);
    const limit = Math.min(MAX_LIMIT, Math.max(1, Number(q.limit ?? DEFAULT_LIMIT) || DEFAULT_LIMIT));
    return listSuppressions(o, { account: acct, reason: str(q.reason), scope: str(q.scope), address: str(q.address), after: str(q.after), limit });
  });

  app.post('/api/suppressions', async (req, reply) => {
    const items = Array.isArray(req.body) ? (req.body as unknown[]) : [req.body];
    const inputs = items.map((raw): SuppressionInput => {
      const b = (raw ?? {}) as Record<string, unknown>;
      return { account: account(req, b.account, true)!, address: str(b.address) ?? '', scope: str(b.scope), reason: str(b.reason), detail: str(b.detail) };
    });
    return reply.code(201).send({ added: await addSuppressions(o, inputs) });
  });

  app.delete('/api/suppressions', async (req) => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    const acct = account(req, q.account, true)!;
    const address = str(q.address);
    if (!address) throw new PostinoError('BAD_REQUEST', 'address is required');
    return { removed: await removeSuppression(o, acct, address, str(q.scope) ?? '*') };
  });

  void app.register(async (scope) => {
    // The body is read as a stream: a million rows never sit in memory.
    scope.addContentTypeParser(['text/csv', 'text/plain', 'application/octet-stream'], (_req, payload, done) => done(null, payload));
    scope.post('/api/suppressions/import', async (req) => {
      const q = (req.query ?? {}) as Record<string, unknown>;
      const acct = account(req, q.account, true)!;
      const reason = str(q.reason);
      if (reason !== undefined && !SUPPRESSION_REASONS.includes(reason as SuppressionReason)) throw new PostinoError('BAD_REQUEST', `reason is one of ${SUPPRESSION_REASONS.join(', ')}`);
      if (!(req.body instanceof Readable)) throw new PostinoError('BAD_REQUEST', 'send the rows as text/csv');
      return importSuppressionCsv(o, acct, reason, req.body);
    });
  });

  app.get('/api/suppressions/export', async (req, reply) => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    const acct = account(req, q.account, false);
    return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="suppressions${acct ? `-${acct}` : ''}.csv"`).send(suppressionCsv(o, acct));
  });
}

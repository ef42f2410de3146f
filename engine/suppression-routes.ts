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
 * it) and when. Imports are written in batches of IMPORT_BATCH and one synced
 * batch at the end, so an import of a million rows takes seconds and is
 * durable when the answer comes.
 * Side effects: LevelDB reads and writes.
 */
import { Readable } from 'node:stream';
import { splitAddress } from '../common/address.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { csvRow, readCsv } from '../common/csv.js';
import { PostinoError } from '../common/errors.js';
import { accountScope } from '../common/http-server.js';
import type { BatchOp, Store } from '../common/store.js';
import type { SuppressionList, SuppressionReason } from './suppression.js';

const MAX_LIMIT = 10_000;
const DEFAULT_LIMIT = 1_000;
/** Rows per LevelDB batch during an import (unsynced; one synced batch ends the import). */
const IMPORT_BATCH = 10_000;
/** Rejected rows listed one by one in the answer; the rest are only counted. */
const MAX_REJECTED_LISTED = 1_000;
/** RFC 5321 4.5.3.1.3: a path is at most 256 octets, so an address at most 254. */
const MAX_ADDRESS = 254;
const REASONS: readonly SuppressionReason[] = ['hard-bounce', 'soft-bounces', 'complaint', 'unsubscribe', 'manual'];
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

export interface SuppressionRouteOptions {
  store: Store;
  suppression: SuppressionList;
  accounts: readonly string[];
}

export function registerSuppressionRoutes(app: FastifyInstance, o: SuppressionRouteOptions): void {
  const known = new Set(o.accounts);
  /** The account named (or, for an account key, its own); another account's is 403. */
  const account = (req: FastifyRequest, v: unknown, required: boolean): string | undefined => {
    const a = accountScope(req, str(v));
    if (!a && required) throw new PostinoError('BAD_REQUEST', 'account is required');
    if (a && !known.has(a)) throw new PostinoError('BAD_REQUEST', `unknown account "${a}"`);
    return a;
  };

  app.get('/api/suppressions', async (req) => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    const acct = account(req, q.account, false);
    const limit = Math.min(MAX_LIMIT, Math.max(1, Number(q.limit ?? DEFAULT_LIMIT) || DEFAULT_LIMIT));
    const reason = str(q.reason);
    const scope = str(q.scope);
    const address = str(q.address)?.toLowerCase();
    const out: unknown[] = [];
    let next: string | null = null;
    for await (const e of o.suppression.entries({ account: acct, after: str(q.after) })) {
      if ((reason && e.reason !== reason) || (scope && e.scope !== scope) || (address && e.address.toLowerCase() !== address)) continue;
      const { cursor, ...entry } = e;
      out.push(entry);
      if (out.length >= limit) {
        next = cursor;
        break;
      }
    }
    return { suppressions: out, next };
  });

  app.post('/api/suppressions', async (req, reply) => {
    const items = Array.isArray(req.body) ? (req.body as unknown[]) : [req.body];
    const ops: BatchOp[] = [];
    const at = new Date().toISOString();
    items.forEach((raw, i) => {
      const b = (raw ?? {}) as Record<string, unknown>;
      const acct = account(req, b.account, true)!;
      const address = str(b.address) ?? '';
      const scope = str(b.scope) ?? '*';
      const reason = (str(b.reason) ?? 'manual') as SuppressionReason;
      const problem = addressProblem(address) ?? scopeProblem(scope) ?? (REASONS.includes(reason) ? undefined : `reason is one of ${REASONS.join(', ')}`);
      if (problem) throw new PostinoError('BAD_REQUEST', `${items.length > 1 ? `item ${i}: ` : ''}${address || '(no address)'}: ${problem}`);
      ops.push(...o.suppression.addOps(acct, { address, scope, reason, detail: str(b.detail), at }));
    });
    await o.store.commit(ops, { sync: true });
    return reply.code(201).send({ added: items.length });
  });

  app.delete('/api/suppressions', async (req) => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    const acct = account(req, q.account, true)!;
    const address = str(q.address);
    if (!address) throw new PostinoError('BAD_REQUEST', 'address is required');
    const scope = str(q.scope) ?? '*';
    const existed = (await o.suppression.get(acct, address, scope)) !== undefined;
    if (existed) await o.suppression.remove(acct, address, scope);
    return { removed: existed };
  });

  void app.register(async (scope) => {
    // The body is read as a stream: a million rows never sit in memory.
    scope.addContentTypeParser(['text/csv', 'text/plain', 'application/octet-stream'], (_req, payload, done) => done(null, payload));
    scope.post('/api/suppressions/import', async (req) => {
      const q = (req.query ?? {}) as Record<string, unknown>;
      const acct = account(req, q.account, true)!;
      const reason = (str(q.reason) ?? 'manual') as SuppressionReason;
      if (!REASONS.includes(reason)) throw new PostinoError('BAD_REQUEST', `reason is one of ${REASONS.join(', ')}`);
      if (!(req.body instanceof Readable)) throw new PostinoError('BAD_REQUEST', 'send the rows as text/csv');
      const at = new Date().toISOString();
      let imported = 0;
      let rejectedCount = 0;
      const rejected: Array<{ line: number; reason: string }> = [];
      let ops: BatchOp[] = [];
      const reject = (line: number, why: string): void => {
        rejectedCount++;
        if (rejected.length < MAX_REJECTED_LISTED) rejected.push({ line, reason: why });
      };
      try {
        for await (const r of readCsv(req.body)) {
          const [address = '', scopeField = '', detail = ''] = r.fields.map((f) => f.trim());
          if (r.line === 1 && /^(e-?mail|address)$/i.test(address)) continue; // a header row
          const sc = scopeField || '*';
          const problem = addressProblem(address) ?? scopeProblem(sc);
          if (problem) {
            reject(r.line, `${address || '(empty)'}: ${problem}`);
            continue;
          }
          ops.push(...o.suppression.addOps(acct, { address, scope: sc, reason, detail: detail || 'import', at }));
          imported++;
          if (ops.length >= IMPORT_BATCH) {
            await o.store.commit(ops, { sync: false });
            ops = [];
          }
        }
      } catch (e) {
        // What was read so far is stored (and synced below); the answer says where it stopped.
        reject((e as { line?: number }).line ?? 0, (e as Error).message);
      }
      // One synced write makes the unsynced batches before it durable too (LevelDB has one log).
      ops.push({ type: 'put', key: 'meta!last-suppression-import', value: Buffer.from(at) });
      await o.store.commit(ops, { sync: true });
      return { imported, rejectedCount, rejected };
    });
  });

  app.get('/api/suppressions/export', async (req, reply) => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    const acct = account(req, q.account, false);
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
    return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="suppressions${acct ? `-${acct}` : ''}.csv"`).send(Readable.from(rows()));
  });
}

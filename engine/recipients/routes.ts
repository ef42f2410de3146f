/*
 * routes.ts — the recipient database over the hosted API (bearer API key; an
 * account's key works on its own account only, another account is 403; the
 * node key names `account=` for anything that writes):
 *
 *   GET    /api/recipients?account=&list=&domain=&field=<name>:<value>&createdFrom=&createdTo=
 *          &lastSentFrom=&lastSentTo=&suppressed=true|false&after=&limit=
 *          → {"recipients": [...], "next": "<cursor>" | null}; page with after=<next>
 *   GET    /api/recipients/<address>?account=      one entry (404 when unknown)
 *   PUT    /api/recipients/<address>?account=      {"fields": {...}} replaces the fields (201 when created)
 *   PATCH  /api/recipients/<address>?account=      {"fields": {"a": "x", "b": null}} sets a, removes b
 *   DELETE /api/recipients/<address>?account=      privacy delete (recipients/erase.ts)
 *   POST   /api/recipients/import?account=&format=csv|ndjson   streamed (recipients/import.ts)
 *          → {rows, created, updated, unchanged, rejectedCount, rejected: [{line, reason}]}
 *   GET    /api/recipients/export?account=&format=csv|ndjson   streamed (recipients/export.ts);
 *          NDJSON also with `Accept: application/x-ndjson`
 *
 * An entry: {account, address, fields, lists, firstSeen, lastSent, lastOpened,
 * lastClicked, sent, bounced, complained, suppressed}. Ranges are ISO times,
 * `from` inclusive, `to` exclusive. A listing reads at most MAX_SCAN entries
 * per call; `next` is set whenever there is more to read, even if this page
 * came back short (filters that match few entries).
 * Side effects: LevelDB reads and writes.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { domainOf } from '../../common/address.js';
import { PostinoError } from '../../common/errors.js';
import { accountParam, type KnownAccounts } from '../../common/http-server.js';
import type { Store } from '../../common/store.js';
import type { RecipientDb, RecipientView } from '../recipient-db.js';
import { addressProblem } from '../suppression-routes.js';
import type { SuppressionList } from '../suppression.js';
import type { RecipientEraser } from './erase.js';
import { exportCsv, exportNdjson, recipientPages } from './export.js';
import { checkedFields, fieldNameProblem } from './fields.js';
import { importRecipients, type ImportFormat } from './import.js';

const MAX_LIMIT = 10_000;
const DEFAULT_LIMIT = 1_000;
/** Entries looked at per listing call: a filter matching nothing still answers quickly, with a cursor. */
const MAX_SCAN = 100_000;
const NDJSON = 'application/x-ndjson';

export interface RecipientRouteOptions {
  store: Store;
  db: RecipientDb;
  suppression: SuppressionList;
  eraser: RecipientEraser;
  accounts: KnownAccounts;
}

type Query = Record<string, unknown>;

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function isoParam(q: Query, name: string): string | undefined {
  const v = str(q[name]);
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new PostinoError('BAD_REQUEST', `${name} is not a date or time (ISO 8601)`);
  return new Date(t).toISOString();
}

/** The listing's filters as one predicate. */
function filterOf(q: Query): (r: RecipientView & { suppressed: boolean }) => boolean {
  const list = str(q.list);
  const domain = str(q.domain)?.toLowerCase();
  const fieldParams = ([] as unknown[]).concat(q.field ?? []).map((f) => {
    const s = String(f);
    const at = s.indexOf(':');
    const name = at === -1 ? s : s.slice(0, at);
    const p = fieldNameProblem(name);
    if (p || at === -1) throw new PostinoError('BAD_REQUEST', `field=<name>:<value>${p ? `: ${p}` : ''}`);
    return { name, value: s.slice(at + 1) };
  });
  const [cFrom, cTo, sFrom, sTo] = ['createdFrom', 'createdTo', 'lastSentFrom', 'lastSentTo'].map((n) => isoParam(q, n));
  const sup = str(q.suppressed);
  if (sup !== undefined && sup !== 'true' && sup !== 'false') throw new PostinoError('BAD_REQUEST', 'suppressed is true or false');
  return (r) =>
    (!list || r.lists.includes(list)) &&
    (!domain || domainOf(r.address) === domain) &&
    fieldParams.every((f) => r.fields[f.name] === f.value) &&
    (!cFrom || r.firstSeen >= cFrom) &&
    (!cTo || r.firstSeen < cTo) &&
    (!sFrom || (r.lastSent !== undefined && r.lastSent >= sFrom)) &&
    (!sTo || (r.lastSent !== undefined && r.lastSent < sTo)) &&
    (sup === undefined || r.suppressed === (sup === 'true'));
}

export function registerRecipientRoutes(app: FastifyInstance, o: RecipientRouteOptions): void {
  /** The account named (or, for an account key, its own); another account's is 403. */
  const account = <R extends boolean>(req: FastifyRequest, required: R): R extends true ? string : string | undefined =>
    accountParam(req, (req.query as Query | undefined)?.account, o.accounts, required, ' (account=<id>) with the node API key') as R extends true ? string : string | undefined;
  const addressParam = (req: FastifyRequest): string => {
    const address = (req.params as { address: string }).address.trim();
    const p = addressProblem(address);
    if (p) throw new PostinoError('BAD_REQUEST', `${address.slice(0, 80)}: ${p}`);
    return address;
  };
  const view = async (acct: string, address: string): Promise<(RecipientView & { suppressed: boolean }) | undefined> => {
    const [v] = await o.db.viewMany(acct, [address]);
    if (!v) return undefined;
    const [suppressed] = await o.suppression.suppressedMany(acct, [address]);
    return { ...v, suppressed: suppressed! };
  };

  app.get('/api/recipients', async (req) => {
    const q = (req.query ?? {}) as Query;
    const acct = account(req, false);
    const limit = Math.min(MAX_LIMIT, Math.max(1, Number(q.limit ?? DEFAULT_LIMIT) || DEFAULT_LIMIT));
    const keep = filterOf(q);
    const out: Array<RecipientView & { suppressed: boolean }> = [];
    let next: string | null = null;
    let scanned = 0;
    pages: for await (const page of recipientPages(o.db, o.suppression, acct, str(q.after))) {
      for (const { cursor, ...r } of page) {
        scanned++;
        if (keep(r)) out.push(r);
        if (out.length >= limit || scanned >= MAX_SCAN) {
          next = cursor;
          break pages;
        }
      }
    }
    return { recipients: out, next };
  });

  app.get('/api/recipients/export', async (req, reply) => {
    const q = (req.query ?? {}) as Query;
    const acct = account(req, false);
    const format = str(q.format) ?? (req.headers.accept?.includes(NDJSON) ? 'ndjson' : 'csv');
    if (format !== 'csv' && format !== 'ndjson') throw new PostinoError('BAD_REQUEST', 'format is csv or ndjson');
    if (format === 'csv' && !acct) throw new PostinoError('BAD_REQUEST', 'a CSV export is of one account: name it (account=<id>), or ask for NDJSON');
    const body = format === 'csv' ? exportCsv(o.db, o.suppression, acct!) : exportNdjson(o.db, o.suppression, acct);
    const name = `recipients${acct ? `-${acct}` : ''}.${format}`;
    return reply
      .type(format === 'csv' ? 'text/csv; charset=utf-8' : `${NDJSON}; charset=utf-8`)
      .header('content-disposition', `attachment; filename="${name}"`)
      .send(Readable.from(body));
  });

  app.get('/api/recipients/:address', async (req) => {
    const acct = account(req, true);
    const v = await view(acct, addressParam(req));
    if (!v) throw new PostinoError('NOT_FOUND', 'no such recipient');
    return v;
  });

  const write = (replace: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
    const acct = account(req, true);
    const address = addressParam(req);
    const fields = replace ? checkedFields(req.body, false) : checkedFields(req.body, true);
    const r = await o.db.setFields(acct, address, fields, replace);
    return reply.code(r.created ? 201 : 200).send(await view(acct, address));
  };
  app.put('/api/recipients/:address', write(true));
  app.patch('/api/recipients/:address', write(false));

  app.delete('/api/recipients/:address', async (req) => {
    const acct = account(req, true);
    const r = await o.eraser.delete(acct, addressParam(req));
    if (!r) throw new PostinoError('NOT_FOUND', 'no such recipient');
    return { deleted: true, recipient: r.pseudonym, eventSeq: r.seq };
  });

  void app.register(async (scope) => {
    // The body is read as a stream: a million rows never sit in memory.
    scope.addContentTypeParser(['text/csv', 'text/plain', NDJSON, 'application/octet-stream'], (_req, payload, done) => done(null, payload));
    scope.post('/api/recipients/import', async (req) => {
      const q = (req.query ?? {}) as Query;
      const acct = account(req, true);
      const format = (str(q.format) ?? (req.headers['content-type']?.startsWith(NDJSON) ? 'ndjson' : 'csv')) as ImportFormat;
      if (format !== 'csv' && format !== 'ndjson') throw new PostinoError('BAD_REQUEST', 'format is csv or ndjson');
      if (!(req.body instanceof Readable)) throw new PostinoError('BAD_REQUEST', `send the rows as text/csv or ${NDJSON}`);
      return importRecipients({ store: o.store, db: o.db, account: acct, format }, req.body);
    });
  });
}

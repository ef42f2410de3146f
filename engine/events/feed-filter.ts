/*
 * feed-filter.ts — the query of the DataExporter feed (DESIGN.md, Events):
 * `after`, `limit`, `type` (one or a comma list), `tag`, `recipient`,
 * `messageId`, `from`, `to` (ISO times, `from` inclusive, `to` exclusive) and
 * the account the caller may see (accountScope). Parsed once per request into
 * a predicate; bad input is 400 with the parameter named.
 *
 * Matching: `recipient` compares case-insensitively (addresses are looked up
 * that way everywhere else, common/address.ts); `messageId` with or without
 * the angle brackets; `tag` exactly. `keep` checks every field, the
 * recipient too, so a reader through the recipient index gets the same answer.
 * Side effects: none.
 */
import type { PostinoEvent } from '../../common/events.js';
import { PostinoError } from '../../common/errors.js';

/** One response holds at most this many events; clients page with `after`. Streamed, so memory does not grow with it. */
export const MAX_LIMIT = 1_000_000;
const DEFAULT_LIMIT = 1_000;
/** Type names are lower-case words, possibly dotted (`account.changed`). */
const TYPE_NAME = /^[a-z][a-z.]*$/;

export interface FeedQuery {
  after: number;
  limit: number;
  /** undefined = every account (node key only). */
  account: string | undefined;
  /** Lower-cased; when given, readers may go through the recipient index (recipient-index.ts) instead of the log. */
  recipient: string | undefined;
  keep: (e: PostinoEvent) => boolean;
}

export function intParam(v: unknown, name: string, def: number): number {
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new PostinoError('BAD_REQUEST', `${name} must be a non-negative integer`);
  return n;
}

function str(q: Record<string, unknown>, name: string): string | undefined {
  const v = q[name];
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string') throw new PostinoError('BAD_REQUEST', `${name} must be given once`);
  return v;
}

/** An ISO time, as epoch ms; 400 when it does not parse. */
export function timeParam(q: Record<string, unknown>, name: string): number | undefined {
  const v = str(q, name);
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new PostinoError('BAD_REQUEST', `${name} must be an ISO 8601 time (2026-11-30 or 2026-11-30T10:00:00Z)`);
  return t;
}

export function bareMessageId(id: string): string {
  const t = id.trim();
  return t.startsWith('<') && t.endsWith('>') ? t.slice(1, -1) : t;
}

/** `account` is what accountScope decided for this caller. */
export function parseFeedQuery(query: unknown, account: string | undefined): FeedQuery {
  const q = (query ?? {}) as Record<string, unknown>;
  const after = intParam(q.after, 'after', 0);
  const limit = Math.min(MAX_LIMIT, Math.max(1, intParam(q.limit, 'limit', DEFAULT_LIMIT)));
  const typeList = str(q, 'type')?.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of typeList ?? []) if (!TYPE_NAME.test(t)) throw new PostinoError('BAD_REQUEST', `type "${t}" is not an event type name`);
  const types = typeList?.length ? new Set(typeList) : undefined;
  const tag = str(q, 'tag');
  const recipient = str(q, 'recipient')?.toLowerCase();
  const mid = str(q, 'messageId');
  const messageId = mid === undefined ? undefined : bareMessageId(mid);
  const from = timeParam(q, 'from');
  const to = timeParam(q, 'to');
  if (from !== undefined && to !== undefined && to < from) throw new PostinoError('BAD_REQUEST', 'to is before from');
  const keep = (e: PostinoEvent): boolean => {
    if (account !== undefined && e.account !== account) return false;
    if (types && !types.has(e.type)) return false;
    if (tag !== undefined && e.tag !== tag) return false;
    if (recipient !== undefined && e.recipient?.toLowerCase() !== recipient) return false;
    if (messageId !== undefined && (e.messageId === undefined || bareMessageId(e.messageId) !== messageId)) return false;
    if (from !== undefined || to !== undefined) {
      const at = Date.parse(e.at);
      if (from !== undefined && at < from) return false;
      if (to !== undefined && at >= to) return false;
    }
    return true;
  };
  return { after, limit, account, recipient, keep };
}

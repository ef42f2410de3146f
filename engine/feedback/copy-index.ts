/*
 * copy-index.ts — what the engine remembers about each copy it made, by queue
 * id, so that what comes back later (a DSN to the VERP address, an ARF
 * complaint, an open, a click, an unsubscribe) is attributed to the account,
 * recipient, Message-ID, tag and metadata of the copy, after the copy itself
 * has left the delivery queue.
 *
 * Keys `c!<queue id>` in the hosted LevelDB, written in the same batch as the
 * copy (engine/rewrap/worker.ts), so a copy that exists is always attributable.
 * Queue ids start with their creation time (common/durable-queue.ts), so
 * `sweep` drops everything older than feedback.copyRetentionDays with one
 * range delete, no time index needed.
 *
 * Side effects: LevelDB reads; `sweep` deletes.
 */
import type { Stream } from '../../common/config.js';
import type { BatchOp, Store } from '../../common/store.js';

const PREFIX = 'c!';
/** newQueueId: the creation time in base36, upper case, 9 characters, then a counter and random hex. */
const TIME_WIDTH = 9;

export interface CopyRecord {
  queueId: string;
  account: string;
  recipient: string;
  /** The customer's envelope sender. */
  sender: string;
  messageId?: string | undefined;
  list?: string | undefined;
  stream: Stream;
  tag?: string | undefined;
  metadata?: Record<string, string> | undefined;
  /** When the copy is due to leave (ms): a click seconds after it is a link scanner's. */
  due: number;
}

function key(queueId: string): string {
  return PREFIX + queueId;
}

export class CopyIndex {
  constructor(private readonly store: Store) {}

  putOps(c: CopyRecord): BatchOp[] {
    return [{ type: 'put', key: key(c.queueId), value: Buffer.from(JSON.stringify(c)) }];
  }

  async get(queueId: string): Promise<CopyRecord | undefined> {
    const v = await this.store.db.get(key(queueId));
    return v ? (JSON.parse(v.toString('utf8')) as CopyRecord) : undefined;
  }

  /** Forgets copies created before `before` (ms). */
  async sweep(before: number): Promise<void> {
    const bound = Math.max(0, Math.floor(before)).toString(36).toUpperCase().padStart(TIME_WIDTH, '0');
    await this.store.db.clear({ gte: PREFIX, lt: PREFIX + bound });
  }
}

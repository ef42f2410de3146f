/*
 * account-store.ts — where the accounts API's changes (overlay.ts) and their
 * audit trail are kept, behind one small interface so the scale-out backend
 * (PostgreSQL, issue #14) can take its place: read every overlay at start,
 * write a change together with its `account.changed` event atomically, read
 * one account's history.
 *
 * LevelDB implementation, in the hosted node's database:
 *   acct!o!<account>            → the account's overlay (JSON)
 *   acct!h!<account>!<seq, 16>  → a copy of each of its account.changed events
 * The overlay, the event of the feed (engine/events/event-log.ts) and the
 * history copy go into one synced batch: the feed never shows a change that
 * was not kept, and a kept change is never missing from the feed.
 *
 * Side effects: LevelDB reads and synced writes.
 */
import type { EventInput, PostinoEvent } from '../../common/events.js';
import type { BatchOp, Store } from '../../common/store.js';
import type { EventLog } from '../events/event-log.js';
import type { AccountOverlay } from './overlay.js';

export interface AccountWrite {
  account: string;
  /** The account's new overlay; absent for a change that is not an overlay (a reload of the file). */
  overlay?: AccountOverlay | undefined;
  audit: EventInput;
}

export interface AccountStore {
  overlays(): Promise<Map<string, AccountOverlay>>;
  /** Every write and its event in one durable, atomic commit; returns the events as the feed has them. */
  write(writes: AccountWrite[]): Promise<PostinoEvent[]>;
  /** The account's account.changed events, newest first. */
  history(account: string, limit: number): Promise<PostinoEvent[]>;
}

const OVERLAY = 'acct!o!';
const HISTORY = 'acct!h!';
const SEQ_WIDTH = 16;

export class LevelAccountStore implements AccountStore {
  constructor(
    private readonly store: Store,
    private readonly events: EventLog,
  ) {}

  async overlays(): Promise<Map<string, AccountOverlay>> {
    const out = new Map<string, AccountOverlay>();
    for await (const [k, v] of this.store.db.iterator({ gte: OVERLAY, lt: `${OVERLAY}~` })) out.set(k.slice(OVERLAY.length), JSON.parse(v.toString('utf8')) as AccountOverlay);
    return out;
  }

  async write(writes: AccountWrite[]): Promise<PostinoEvent[]> {
    const done = await this.events.commitWith(
      writes.map((w) => w.audit),
      async (eventOps) => {
        const ops: BatchOp[] = [...eventOps];
        for (const w of writes) if (w.overlay) ops.push({ type: 'put', key: OVERLAY + w.account, value: Buffer.from(JSON.stringify(w.overlay)) });
        // The event ops carry the seqs assigned by prepare(): the history copies reuse them as keys.
        for (const op of eventOps) {
          if (op.type !== 'put') continue;
          const e = JSON.parse(Buffer.from(op.value).toString('utf8')) as PostinoEvent;
          ops.push({ type: 'put', key: `${HISTORY}${e.account}!${String(e.seq).padStart(SEQ_WIDTH, '0')}`, value: op.value });
        }
        await this.store.commit(ops, { sync: true });
      },
    );
    return done ?? [];
  }

  async history(account: string, limit: number): Promise<PostinoEvent[]> {
    const out: PostinoEvent[] = [];
    const prefix = `${HISTORY}${account}!`;
    for await (const v of this.store.db.values({ gte: prefix, lt: `${prefix}~`, reverse: true, limit })) out.push(JSON.parse(v.toString('utf8')) as PostinoEvent);
    return out;
  }
}

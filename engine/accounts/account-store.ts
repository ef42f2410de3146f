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
 * With storage.postgres the overlays and history are PostgreSQL's
 * (account-store-postgres.ts, chosen by app/shared-state.ts) and these keys
 * hold the node's last-known copy.
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
  /**
   * The overlay the change was computed from. A shared store refuses the write (StaleOverlay)
   * when another node changed the account since: the change is made again from its overlay.
   */
  basedOn?: AccountOverlay | undefined;
  audit: EventInput;
}

/** Another node changed the account after this node last read it: `current` is its overlay now. */
export class StaleOverlay extends Error {
  constructor(
    readonly account: string,
    readonly current: AccountOverlay,
  ) {
    super(`account ${account} was changed by another node meanwhile`);
  }
}

export interface AccountStore {
  overlays(): Promise<Map<string, AccountOverlay>>;
  /** Every write and its event in one durable, atomic commit; returns the events as the feed has them. */
  write(writes: AccountWrite[]): Promise<PostinoEvent[]>;
  /** The account's account.changed events, newest first. */
  history(account: string, limit: number): Promise<PostinoEvent[]>;
  /** Overlays changed by another node, as the whole new set; absent on a single node. */
  watch?(fn: (all: Map<string, AccountOverlay>) => void): void;
}

export const OVERLAY_PREFIX = 'acct!o!';

/** The overlays under `acct!o!` in a LevelDB store (also PostgreSQL's last-known copy on the node). */
export async function readOverlayKeys(store: Store): Promise<Map<string, AccountOverlay>> {
  const out = new Map<string, AccountOverlay>();
  for await (const [k, v] of store.db.iterator({ gte: OVERLAY_PREFIX, lt: `${OVERLAY_PREFIX}~` })) out.set(k.slice(OVERLAY_PREFIX.length), JSON.parse(v.toString('utf8')) as AccountOverlay);
  return out;
}

const OVERLAY = OVERLAY_PREFIX;
export const HISTORY_PREFIX = 'acct!h!';
const HISTORY = HISTORY_PREFIX;
const SEQ_WIDTH = 16;

/** The LevelDB key of an account.changed event's history copy. */
export function historyKey(e: PostinoEvent): string {
  return `${HISTORY}${e.account}!${String(e.seq).padStart(SEQ_WIDTH, '0')}`;
}

export class LevelAccountStore implements AccountStore {
  constructor(
    private readonly store: Store,
    private readonly events: EventLog,
  ) {}

  overlays(): Promise<Map<string, AccountOverlay>> {
    return readOverlayKeys(this.store);
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
          ops.push({ type: 'put', key: historyKey(e), value: op.value });
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

/*
 * message-history.ts — `GET /api/messages/<queue id or Message-ID>`: one
 * message's whole story (accepted, each copy, each attempt with the remote
 * reply, the feedback), the question support desks ask most.
 *
 * Index (written by EventLog.prepare in the same batch as the events, so it
 * can never point at an event that did not commit, nor miss one that did):
 *   mq!<queue id>!<seq16>      for the copy's queue id and its intake id
 *   mm!<Message-ID>!<seq16>    Message-ID without angle brackets
 * Values are empty: the event itself stays in `e!<seq16>` only (so the
 * recipient eraser, which rewrites `e!` values, has nothing else to rewrite).
 * A lookup by intake or copy queue id finds that message's Message-IDs and
 * then every event carrying one of them, so asking by the id the listener
 * answered (`250 queued as …`) gives every copy too.
 *
 * Retention deletes the index entries of each pruned event (`indexKeys`).
 * Side effects: LevelDB reads.
 */
import type { PostinoEvent } from '../../common/events.js';
import type { BatchOp, Store } from '../../common/store.js';
import type { EventLog } from './event-log.js';
import { bareMessageId } from './feed-filter.js';

const SEQ_WIDTH = 16;
/** One message's history is read whole; a message to this many copies is answered in part (`truncated`). */
const MAX_EVENTS = 20_000;

function pad(seq: number): string {
  return seq.toString().padStart(SEQ_WIDTH, '0');
}

/** The index keys of one event (what prepare writes and retention deletes). */
export function indexKeys(e: PostinoEvent): string[] {
  const out: string[] = [];
  if (e.queueId) out.push(`mq!${e.queueId}!${pad(e.seq)}`);
  if (e.intakeId && e.intakeId !== e.queueId) out.push(`mq!${e.intakeId}!${pad(e.seq)}`);
  if (e.messageId) out.push(`mm!${bareMessageId(e.messageId)}!${pad(e.seq)}`);
  return out;
}

export function historyIndexer(events: PostinoEvent[]): BatchOp[] {
  const empty = Buffer.alloc(0);
  return events.flatMap((e) => indexKeys(e).map((key): BatchOp => ({ type: 'put', key, value: empty })));
}

export interface CopyHistory {
  queueId: string;
  recipient: string | undefined;
  /** The last event's type: where this copy stands now. */
  status: string;
  events: PostinoEvent[];
}

export interface MessageHistory {
  messageIds: string[];
  intakeIds: string[];
  account: string;
  copies: CopyHistory[];
  /** Events of the message not about one copy (suppressed or rejected recipients, failures before rewrap). */
  other: PostinoEvent[];
  truncated: boolean;
}

export class MessageHistoryIndex {
  constructor(
    private readonly store: Store,
    private readonly events: EventLog,
  ) {}

  private async seqs(prefix: string, into: Set<number>): Promise<void> {
    for await (const key of this.store.db.keys({ gt: prefix, lt: prefix + '~' })) {
      into.add(Number(key.slice(prefix.length)));
      if (into.size >= MAX_EVENTS) return;
    }
  }

  /**
   * The histories of the message(s) this id names, among the events `account`
   * may see (undefined = all). Empty when there is none (or none of this account).
   */
  async lookup(id: string, account: string | undefined): Promise<MessageHistory[]> {
    const seqs = new Set<number>();
    await this.seqs(`mq!${id}!`, seqs);
    await this.seqs(`mm!${bareMessageId(id)}!`, seqs);
    const load = async (set: Iterable<number>): Promise<PostinoEvent[]> => {
      const out: PostinoEvent[] = [];
      for (const s of set) {
        const e = await this.events.get(s);
        if (e && (account === undefined || e.account === account)) out.push(e);
      }
      return out;
    };
    const first = await load(seqs);
    // By queue id: widen to the whole message through its Message-ID.
    const mids = new Set(first.map((e) => e.messageId).filter((m): m is string => !!m).map(bareMessageId));
    const more = new Set<number>();
    for (const m of mids) await this.seqs(`mm!${m}!`, more);
    for (const s of seqs) more.delete(s);
    const all = [...first, ...(await load(more))].sort((a, b) => a.seq - b.seq);
    // The same Message-ID from two accounts (a node-key lookup) is two messages.
    const byAccount = new Map<string, PostinoEvent[]>();
    for (const e of all) byAccount.set(e.account, [...(byAccount.get(e.account) ?? []), e]);
    const truncated = seqs.size + more.size >= MAX_EVENTS;
    return [...byAccount].map(([acct, evs]) => {
      const copies = new Map<string, CopyHistory>();
      const other: PostinoEvent[] = [];
      for (const e of evs) {
        // A copy is what has an intake id apart from its own queue id, or was accepted as one.
        const isCopy = e.queueId !== undefined && (e.intakeId !== undefined || copies.has(e.queueId));
        if (!isCopy) {
          other.push(e);
          continue;
        }
        const c = copies.get(e.queueId!) ?? { queueId: e.queueId!, recipient: e.recipient, status: e.type, events: [] };
        c.events.push(e);
        c.status = e.type;
        copies.set(e.queueId!, c);
      }
      return {
        account: acct,
        messageIds: [...new Set(evs.map((e) => e.messageId).filter((m): m is string => !!m))],
        intakeIds: [...new Set(evs.map((e) => e.intakeId).filter((m): m is string => !!m))],
        copies: [...copies.values()],
        other,
        truncated,
      };
    });
  }
}

/*
 * forwarder-log.ts — the forwarders (and applications) known to this node: per
 * client address and account, the last message accepted from it, when, and how
 * many today (UTC) and in all; shown on the dashboard's overview.
 *
 * Kept off the SMTP session: the rewrap notes each message it takes off the
 * intake (the client address is in the intake record's envelope) in a map in
 * memory, and the changed entries are written every FLUSH_MS in one unsynced
 * LevelDB batch (keys `fw!<address>!<account>`), so a restart keeps what was
 * known up to the last flush. A message the rewrap takes up twice (a crash
 * before its commit) is counted twice: these are operator figures, not bills.
 *
 * Side effects: LevelDB writes (unsynced) every FLUSH_MS while something changed.
 */
import type { Logger } from '../../common/log.js';
import type { BatchOp, Store } from '../../common/store.js';

/** How often changed entries are written: a restart forgets at most this much of the figures. */
const FLUSH_MS = 10_000;
/**
 * Entries kept: far more forwarders than a node has, while a flood of applications connecting
 * from ever new addresses cannot grow the map without bound (the least recently seen go).
 */
const MAX_ENTRIES = 10_000;
const PREFIX = 'fw!';

export interface ForwarderSeen {
  address: string;
  account: string;
  lastSeenAt: string;
  lastQueueId: string;
  lastMessageId?: string | undefined;
  lastSender: string;
  /** The last message came from a Postino forwarder (its spool id), not straight from an application. */
  forwarded: boolean;
  /** The UTC day `today` counts. */
  day: string;
  today: number;
  total: number;
}

export interface Sighting {
  address: string;
  account: string;
  queueId: string;
  messageId?: string | undefined;
  sender: string;
  forwarded: boolean;
}

const keyOf = (address: string, account: string): string => `${PREFIX}${address}!${account}`;

export class ForwarderLog {
  private readonly seen = new Map<string, ForwarderSeen>();
  private readonly dirty = new Set<string>();
  private readonly gone = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  static async open(store: Store, log: Logger, now: () => number = Date.now): Promise<ForwarderLog> {
    const f = new ForwarderLog(store, log, now);
    const all: ForwarderSeen[] = [];
    for await (const [, v] of store.db.iterator({ gte: PREFIX, lt: `${PREFIX}~` })) all.push(JSON.parse(v.toString('utf8')) as ForwarderSeen);
    // Least recently seen first, as the map keeps them.
    for (const e of all.sort((a, b) => a.lastSeenAt.localeCompare(b.lastSeenAt))) f.seen.set(keyOf(e.address, e.account), e);
    return f;
  }

  /** One accepted message: a map update, nothing else (see the header). */
  note(s: Sighting): void {
    const at = new Date(this.now()).toISOString();
    const day = at.slice(0, 10);
    const key = keyOf(s.address, s.account);
    const before = this.seen.get(key);
    this.seen.delete(key); // re-inserted last: the map stays in order of last sighting
    this.seen.set(key, {
      address: s.address,
      account: s.account,
      lastSeenAt: at,
      lastQueueId: s.queueId,
      lastMessageId: s.messageId,
      lastSender: s.sender,
      forwarded: s.forwarded,
      day,
      today: before?.day === day ? before.today + 1 : 1,
      total: (before?.total ?? 0) + 1,
    });
    this.dirty.add(key);
    this.gone.delete(key);
    if (this.seen.size > MAX_ENTRIES) {
      const oldest = this.seen.keys().next().value!;
      this.seen.delete(oldest);
      this.dirty.delete(oldest);
      this.gone.add(oldest);
    }
  }

  /** Most recently seen first; one account's only when `account` is given. */
  list(account?: string): ForwarderSeen[] {
    const today = new Date(this.now()).toISOString().slice(0, 10);
    const out: ForwarderSeen[] = [];
    for (const e of this.seen.values()) if (account === undefined || e.account === account) out.push(e.day === today ? e : { ...e, day: today, today: 0 });
    return out.reverse();
  }

  async flush(): Promise<void> {
    if (this.dirty.size === 0 && this.gone.size === 0) return;
    const ops: BatchOp[] = [];
    for (const k of this.dirty) ops.push({ type: 'put', key: k, value: Buffer.from(JSON.stringify(this.seen.get(k))) });
    for (const k of this.gone) ops.push({ type: 'del', key: k });
    this.dirty.clear();
    this.gone.clear();
    await this.store.commit(ops, { sync: false });
  }

  start(): void {
    this.timer = setInterval(() => void this.flush().catch((err: unknown) => this.log.warn({ err }, 'forwarder figures not written')), FLUSH_MS).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

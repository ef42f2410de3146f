/*
 * brake-records.ts — where the reputation brake (reputation-brake.ts) keeps
 * its records: per account, paused or resumed, the figures of the decision
 * and, after a resume, the baseline of hourly counters it subtracts. Behind
 * one small interface with two backends chosen by app/shared-state.ts: this
 * node's LevelDB (here; a single node) or PostgreSQL
 * (brake-records-postgres.ts; every node reads and decides on the same record).
 *
 * The two writes that make an event are *claims*: compare-and-set on the
 * record the brake judged (its `claim` id), so of several nodes judging the
 * same installation-wide figures exactly one pauses (and writes the `paused`
 * event, so the customer gets one notice), and exactly one writes the
 * `resumed` event of a resume. A claim that lost returns false: another node
 * decided first, or the record changed since it was read.
 *
 * LevelDB keys, unchanged: `brake!<account>` → the BrakeRecord as JSON,
 * written synced in the batch of its event (EventLog.commitWith).
 *
 * Side effects: LevelDB reads and synced writes.
 */
import type { EventInput, PostinoEvent } from '../../common/events.js';
import type { Store } from '../../common/store.js';
import type { EventLog } from './event-log.js';
import type { Counts } from './stats.js';

type Figures = NonNullable<PostinoEvent['figures']>;

export interface BrakeRecord {
  state: 'paused' | 'resumed';
  at: string;
  reason?: string | undefined;
  figures?: Figures | undefined;
  /** resumed: the hourly counters at the moment of the resume, per scope ('all' or a stream) and hour bucket. */
  baseline?: Record<string, Record<string, Counts>> | undefined;
  /** paused: the kill-switch was turned on (reputation-brake.ts). */
  engaged?: boolean | undefined;
  /** A random id per decision: the claims compare it (absent in records written before claims existed). */
  claim?: string | undefined;
}

export interface BrakeRecords {
  /** true: other nodes change the records too (PostgreSQL), so the brake re-reads them on a beat. */
  readonly shared: boolean;
  /** Every record. */
  load(): Promise<Map<string, BrakeRecord>>;
  /** The records of these accounts as they are now (absent: none). */
  get(accounts: readonly string[]): Promise<Map<string, BrakeRecord>>;
  /** Records `next` (paused) and its event if the record is still `prev` and not paused; false: another decision came first. */
  claimPause(account: string, next: BrakeRecord, prev: BrakeRecord | undefined, event: EventInput): Promise<boolean>;
  /** Marks the pause `paused` (by its claim) as engaged: its switch is on. */
  markEngaged(account: string, paused: BrakeRecord): Promise<void>;
  /** Records `next` (resumed) and its event if the record is still the pause `paused` and its switch is off; false otherwise. */
  claimResume(account: string, next: BrakeRecord, paused: BrakeRecord, event: EventInput): Promise<boolean>;
}

export function brakeKey(account: string): string {
  return `brake!${account}`;
}

/** The records under `brake!` in a LevelDB store (also what a node moving to PostgreSQL adopts). */
export async function readBrakeKeys(store: Store): Promise<Map<string, BrakeRecord>> {
  const out = new Map<string, BrakeRecord>();
  for await (const [k, v] of store.db.iterator({ gte: 'brake!', lt: 'brake~' })) out.set(k.slice('brake!'.length), JSON.parse(v.toString('utf8')) as BrakeRecord);
  return out;
}

export class LevelBrakeRecords implements BrakeRecords {
  readonly shared = false;

  constructor(
    private readonly store: Store,
    private readonly events: EventLog,
  ) {}

  load(): Promise<Map<string, BrakeRecord>> {
    return readBrakeKeys(this.store);
  }

  private async read(account: string): Promise<BrakeRecord | undefined> {
    const v = await this.store.db.get(brakeKey(account));
    return v === undefined ? undefined : (JSON.parse(v.toString('utf8')) as BrakeRecord);
  }

  async get(accounts: readonly string[]): Promise<Map<string, BrakeRecord>> {
    const out = new Map<string, BrakeRecord>();
    for (const a of accounts) {
      const r = await this.read(a);
      if (r) out.set(a, r);
    }
    return out;
  }

  /** One node: the brake's calls are serialised, so a read then a batch is a compare-and-set. */
  private async claim(account: string, next: BrakeRecord, prev: BrakeRecord | undefined, event: EventInput, ok: (cur: BrakeRecord | undefined) => boolean): Promise<boolean> {
    const cur = await this.read(account);
    if (!ok(cur) || cur?.claim !== prev?.claim) return false;
    await this.events.commitWith([event], (ops) => this.store.commit([...ops, { type: 'put', key: brakeKey(account), value: Buffer.from(JSON.stringify(next)) }], { sync: true }));
    return true;
  }

  claimPause(account: string, next: BrakeRecord, prev: BrakeRecord | undefined, event: EventInput): Promise<boolean> {
    return this.claim(account, next, prev, event, (cur) => cur?.state !== 'paused');
  }

  claimResume(account: string, next: BrakeRecord, paused: BrakeRecord, event: EventInput): Promise<boolean> {
    return this.claim(account, next, paused, event, (cur) => cur?.state === 'paused');
  }

  async markEngaged(account: string, paused: BrakeRecord): Promise<void> {
    await this.store.commit([{ type: 'put', key: brakeKey(account), value: Buffer.from(JSON.stringify({ ...paused, engaged: true })) }], { sync: true });
  }
}

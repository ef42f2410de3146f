/*
 * brake-records-postgres.ts — the reputation brake's records in PostgreSQL
 * (storage.postgres): one row of brake_records per account the brake ever
 * paused (account → the BrakeRecord as jsonb), the same for every node. Every
 * node's brake judges the installation's statistics (stats-postgres.ts), so
 * every node would reach the same decision; the record makes it one decision.
 *
 * Pause: a conditional upsert, taken only when the row is not paused and is
 * still the record the node judged (its `claim` id):
 *   INSERT … ON CONFLICT (account) DO UPDATE SET record = EXCLUDED.record
 *   WHERE record->>'state' IS DISTINCT FROM 'paused' AND record->>'claim' IS NOT DISTINCT FROM $prev
 *   RETURNING account
 * Only the node that gets its row back writes the `paused` event, in its own
 * log (shipped to the global feed; its notifier mails the one notice), and
 * engages the shared kill-switch; the others re-read the record.
 *
 * Resume: whichever node sees the switch off for an engaged pause claims the
 * resume, conditional on the same pause (`claim`) still being there and on
 * the switch's row being absent in delivery_pauses, read in the same
 * statement, so a node whose copy of the switches lags (it polls every
 * 500 ms) cannot take a pause it has not seen yet for a resume. The record
 * then holds the baseline, and every node subtracts it when it judges:
 * no node pauses again on the complaints already acted on, not even one that
 * was down during the pause and the resume.
 *
 * The crash window between a claim and its event: before claiming, the node
 * writes the claim it is about to make into its LevelDB (`brake-claim!<account>`,
 * synced); the event is written in the batch that deletes it. A node that dies
 * (or loses PostgreSQL) after the claim committed and before the event finds
 * the claim at its next start or its next re-read (every 2 s) and, when
 * PostgreSQL holds that claim, writes the event then; when it does not (the
 * claim never committed: statement_timeout cancels a claim whose reply was
 * lost), it drops it. A node that never comes back leaves a pause without its
 * `paused` event; the pause itself holds: any node engages a paused record
 * whose switch is not on yet (`engaged`).
 *
 * PostgreSQL unavailable: a read or claim throws (SHARED_STATE_UNAVAILABLE);
 * the brake logs and tries again at its next beat; nothing is decided twice.
 * Statistics fail too while it is down, so the brake does not judge anyway.
 *
 * A node moving from LevelDB: its `brake!` records are written to the table
 * once (a row already there wins), so a paused account keeps its record.
 *
 * Side effects: PostgreSQL reads and writes; LevelDB writes (claims, events).
 */
import type { EventInput } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import { sharedQuery, type PgPool } from '../../common/storage/postgres/pool.js';
import type { Store } from '../../common/store.js';
import { readBrakeKeys, type BrakeRecord, type BrakeRecords } from './brake-records.js';
import type { EventLog } from './event-log.js';

/** Set once this node's LevelDB records were written to PostgreSQL; outside `brake!`, which holds only records. */
const ADOPTED = 'pgbrake!adopted';
/** A claim being made: its record and its event (see the header). */
const CLAIM = 'brake-claim!';

interface PendingClaim {
  record: BrakeRecord;
  event: EventInput;
}

export class PgBrakeRecords implements BrakeRecords {
  readonly shared = true;

  constructor(
    private readonly pool: PgPool,
    private readonly store: Store,
    private readonly events: EventLog,
    private readonly log: Logger,
  ) {}

  async load(): Promise<Map<string, BrakeRecord>> {
    await this.adoptLocal();
    await this.settle();
    const r = await sharedQuery<{ account: string; record: BrakeRecord }>(this.pool, 'reputation brake', 'SELECT account, record FROM brake_records');
    return new Map(r.rows.map((x) => [x.account, x.record]));
  }

  async get(accounts: readonly string[]): Promise<Map<string, BrakeRecord>> {
    if (!accounts.length) return new Map();
    const r = await sharedQuery<{ account: string; record: BrakeRecord }>(this.pool, 'reputation brake', 'SELECT account, record FROM brake_records WHERE account = ANY($1::text[])', [accounts]);
    return new Map(r.rows.map((x) => [x.account, x.record]));
  }

  claimPause(account: string, next: BrakeRecord, prev: BrakeRecord | undefined, event: EventInput): Promise<boolean> {
    return this.claim(account, next, event, () =>
      sharedQuery(
        this.pool,
        'reputation brake',
        `INSERT INTO brake_records (account, record) VALUES ($1, $2)
         ON CONFLICT (account) DO UPDATE SET record = EXCLUDED.record
         WHERE brake_records.record->>'state' IS DISTINCT FROM 'paused' AND brake_records.record->>'claim' IS NOT DISTINCT FROM $3
         RETURNING account`,
        [account, JSON.stringify(next), prev?.claim ?? null],
      ),
    );
  }

  claimResume(account: string, next: BrakeRecord, paused: BrakeRecord, event: EventInput): Promise<boolean> {
    return this.claim(account, next, event, () =>
      sharedQuery(
        this.pool,
        'reputation brake',
        `UPDATE brake_records SET record = $2
         WHERE account = $1 AND record->>'state' = 'paused' AND record->>'claim' IS NOT DISTINCT FROM $3
           AND NOT EXISTS (SELECT 1 FROM delivery_pauses WHERE scope = $1)
         RETURNING account`,
        [account, JSON.stringify(next), paused.claim ?? null],
      ),
    );
  }

  async markEngaged(account: string, paused: BrakeRecord): Promise<void> {
    await sharedQuery(
      this.pool,
      'reputation brake',
      `UPDATE brake_records SET record = record || '{"engaged": true}'::jsonb
       WHERE account = $1 AND record->>'state' = 'paused' AND record->>'claim' IS NOT DISTINCT FROM $2`,
      [account, paused.claim ?? null],
    );
  }

  /** The claim noted in LevelDB first, then in PostgreSQL; the event (won) in the batch that drops the note. */
  private async claim(account: string, next: BrakeRecord, event: EventInput, run: () => Promise<{ rowCount: number | null }>): Promise<boolean> {
    const key = CLAIM + account;
    await this.store.commit([{ type: 'put', key, value: Buffer.from(JSON.stringify({ record: next, event } satisfies PendingClaim)) }], { sync: true });
    const won = ((await run()).rowCount ?? 0) > 0; // throws: the note stays, settle() decides
    if (won) await this.events.commitWith([event], (ops) => this.store.commit([...ops, { type: 'del', key }], { sync: true }));
    else await this.store.commit([{ type: 'del', key }], { sync: true });
    return won;
  }

  /** Claims noted but not finished (a crash, or PostgreSQL's reply lost): the event when PostgreSQL holds the claim, else nothing. */
  private async settle(): Promise<void> {
    const pending: Array<[string, PendingClaim]> = [];
    for await (const [k, v] of this.store.db.iterator({ gte: CLAIM, lt: 'brake-claim~' })) pending.push([k.slice(CLAIM.length), JSON.parse(v.toString('utf8')) as PendingClaim]);
    if (!pending.length) return;
    const now = await this.get(pending.map(([a]) => a));
    for (const [account, p] of pending) {
      const key = CLAIM + account;
      const r = now.get(account);
      const held = r !== undefined && r.claim === p.record.claim && r.state === p.record.state;
      if (held) await this.events.commitWith([p.event], (ops) => this.store.commit([...ops, { type: 'del', key }], { sync: true }));
      else await this.store.commit([{ type: 'del', key }], { sync: true });
      this.log.info({ event: 'reputation-claim-settled', account, state: p.record.state, held }, held ? 'a brake decision whose event was not written yet: written now' : 'a brake decision that did not reach PostgreSQL: dropped');
    }
  }

  /** A node that ran on LevelDB before storage.postgres was set: its records go to PostgreSQL once (a row already there wins). */
  private async adoptLocal(): Promise<void> {
    if ((await this.store.db.get(ADOPTED)) !== undefined) return;
    const local = await readBrakeKeys(this.store);
    for (const [account, record] of local) {
      await sharedQuery(this.pool, 'reputation brake', 'INSERT INTO brake_records (account, record) VALUES ($1, $2) ON CONFLICT (account) DO NOTHING', [account, JSON.stringify(record)]);
    }
    await this.store.commit([{ type: 'put', key: ADOPTED, value: Buffer.from(new Date().toISOString()) }], { sync: true });
    if (local.size) this.log.info({ event: 'brake-records-adopted', accounts: [...local.keys()] }, "this node's reputation brake records written to PostgreSQL");
  }
}

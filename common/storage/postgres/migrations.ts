/*
 * migrations.ts — the shared-state schema in PostgreSQL, as numbered
 * migrations applied by `postino db migrate` (never by a node at start: an
 * upgrade is stop, migrate, start, and a node whose code needs a newer schema
 * refuses to start, saying so).
 *
 * Versioned: table schema_migrations(version, name, applied_at) says which are
 * applied; a migration runs once, in order, and is never edited once released
 * (a change is a new entry). Idempotent: a second run applies nothing.
 * Concurrent: all pending migrations run in one transaction that first takes a
 * transaction-scoped advisory lock (pg_advisory_xact_lock), so two nodes
 * migrating at once serialise; the second finds everything applied. DDL is
 * transactional in PostgreSQL, so a failed migration leaves no half schema.
 *
 * Text columns that make up a cursor are `COLLATE "C"`: byte order, the order
 * LevelDB keeps its keys in, so a listing pages the same way on both backends.
 *
 * Events (schema only for now; the writers move in a later step of #14):
 * declaratively partitioned by range of `at`, one partition per UTC day
 * (events_YYYYMMDD), created ahead by postino_event_partitions(from, days);
 * retention drops whole partitions (postino_drop_event_partitions(before)),
 * which costs no vacuum and no index churn, unlike a DELETE of a day's rows.
 *
 * Quotas: counters per account and UTC hour / day window, checked and
 * incremented in one statement (postino_quota_reserve), so a limit holds
 * across every node; rows of ended windows are deleted by expiry.
 *
 * Side effects: DDL on the database named by storage.postgres.url.
 */
import type { PgPool } from './pool.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** pg_advisory_xact_lock key: "postino\0" as a 64-bit integer, unlikely to clash with another application's. */
const MIGRATION_LOCK_KEY = '8101821198485057280';

/** Days of event partitions a migration creates ahead of today (a node keeps creating them later). */
const PARTITIONS_AHEAD_DAYS = 3;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'suppressions',
    sql: `
      CREATE TABLE suppressions (
        account text COLLATE "C" NOT NULL,
        scope text COLLATE "C" NOT NULL,
        address text COLLATE "C" NOT NULL,
        reason text NOT NULL,
        at timestamptz NOT NULL,
        detail text,
        queue_id text,
        PRIMARY KEY (account, scope, address)
      );`,
  },
  {
    version: 2,
    name: 'events partitioned by day',
    sql: `
      CREATE TABLE events (
        at timestamptz NOT NULL,
        seq bigint NOT NULL,
        account text COLLATE "C" NOT NULL,
        type text NOT NULL,
        queue_id text,
        body jsonb NOT NULL,
        PRIMARY KEY (at, seq)
      ) PARTITION BY RANGE (at);
      CREATE INDEX events_account_seq ON events (account, seq);
      CREATE FUNCTION postino_event_partitions(from_day date, days int) RETURNS int LANGUAGE plpgsql AS $$
      DECLARE
        d date;
        made int := 0;
      BEGIN
        FOR i IN 0 .. days - 1 LOOP
          d := from_day + i;
          IF to_regclass(format('events_%s', to_char(d, 'YYYYMMDD'))) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
              'events_' || to_char(d, 'YYYYMMDD'), d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
          END IF;
        END LOOP;
        RETURN made;
      END $$;
      CREATE FUNCTION postino_drop_event_partitions(before_day date) RETURNS int LANGUAGE plpgsql AS $$
      DECLARE
        p record;
        dropped int := 0;
      BEGIN
        FOR p IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_[0-9]{8}$'
                   AND to_date(substr(c.relname, 8), 'YYYYMMDD') < before_day LOOP
          EXECUTE format('DROP TABLE %I', p.relname);
          dropped := dropped + 1;
        END LOOP;
        RETURN dropped;
      END $$;
      SELECT postino_event_partitions((now() AT TIME ZONE 'UTC')::date, ${PARTITIONS_AHEAD_DAYS});`,
  },
  {
    version: 3,
    name: 'quota counters',
    // One row per account and window ('h:YYYYMMDDHH', 'd:YYYYMMDD'). postino_quota_reserve counts a
    // message in both windows or in neither, in one statement: the rows are locked hour first, then
    // day (one order for every caller, so two nodes never deadlock), checked, then incremented.
    sql: `
      CREATE TABLE quota_counters (
        account text COLLATE "C" NOT NULL,
        win text COLLATE "C" NOT NULL,
        n bigint NOT NULL,
        expires timestamptz NOT NULL,
        PRIMARY KEY (account, win)
      );
      CREATE INDEX quota_counters_expires ON quota_counters (expires);
      CREATE FUNCTION postino_quota_reserve(acct text, hour_win text, day_win text, units int, per_hour int, per_day int, hour_end timestamptz, day_end timestamptz,
                                            OUT refused text, OUT hour_n bigint, OUT day_n bigint) LANGUAGE plpgsql AS $$
      BEGIN
        -- A count is not worth a WAL flush per message: a PostgreSQL crash may forget the last
        -- fraction of a second of counts (wal_writer_delay), which errs toward a few more messages.
        PERFORM set_config('synchronous_commit', 'off', true);
        INSERT INTO quota_counters VALUES (acct, hour_win, 0, hour_end), (acct, day_win, 0, day_end) ON CONFLICT DO NOTHING;
        SELECT n INTO hour_n FROM quota_counters WHERE account = acct AND win = hour_win FOR UPDATE;
        SELECT n INTO day_n FROM quota_counters WHERE account = acct AND win = day_win FOR UPDATE;
        IF per_hour > 0 AND hour_n + units > per_hour THEN refused := 'hour'; RETURN; END IF;
        IF per_day > 0 AND day_n + units > per_day THEN refused := 'day'; RETURN; END IF;
        UPDATE quota_counters SET n = n + units WHERE account = acct AND win IN (hour_win, day_win);
        hour_n := hour_n + units;
        day_n := day_n + units;
      END $$;`,
  },
  {
    version: 4,
    name: 'spool ids',
    // The forwarder's X-Postino-Spool-Id per account scope, for every node (common/spool-id-postgres.ts):
    // 'claimed' while one node writes the message, 'done' once it is in that node's queue.
    sql: `
      CREATE TABLE spool_ids (
        scope text COLLATE "C" NOT NULL,
        spool_id text COLLATE "C" NOT NULL,
        queue_id text NOT NULL,
        state text NOT NULL CHECK (state IN ('claimed', 'done')),
        expires timestamptz NOT NULL,
        PRIMARY KEY (scope, spool_id)
      );
      CREATE INDEX spool_ids_expires ON spool_ids (expires);`,
  },
  {
    version: 5,
    name: 'global event feed and node heartbeats',
    // Each node ships its own event log here (engine/events/event-shipper.ts). `seq` is the feed's
    // global order: taken from the one counter row, locked FOR UPDATE until the shipping transaction
    // commits, so seqs are handed out in commit order and a reader never sees seq N+1 before N
    // (see event-shipper.ts). `node_seq` is the event's seq in its node's own log; event_feed_nodes
    // says how far each node has shipped, updated in the same transaction as its rows.
    sql: `
      ALTER TABLE events ADD COLUMN node text COLLATE "C" NOT NULL, ADD COLUMN node_seq bigint NOT NULL;
      CREATE INDEX events_seq ON events (seq);
      CREATE TABLE event_feed_counter (id int PRIMARY KEY CHECK (id = 1), last bigint NOT NULL);
      INSERT INTO event_feed_counter VALUES (1, 0);
      CREATE TABLE event_feed_nodes (node text COLLATE "C" PRIMARY KEY, shipped bigint NOT NULL, at timestamptz NOT NULL);
      -- Every node's heartbeat (engine/nodes/node-registry-postgres.ts): hosted status lists them all.
      CREATE TABLE nodes (node text COLLATE "C" PRIMARY KEY, started_at timestamptz NOT NULL, seen_at timestamptz NOT NULL, status jsonb NOT NULL);`,
  },
  {
    version: 6,
    name: 'delivery pauses and dashboard sessions',
    // The kill-switch for every node (engine/delivery/pause-store-postgres.ts): one row per switch
    // that is on, scope '*' (global) or an account id; each node polls the table, so a pause made
    // through any node holds on all. Dashboard logins (engine/dashboard/sessions-postgres.ts): a
    // cookie issued by one node is valid on every node; only the SHA-256 of the id is kept.
    sql: `
      CREATE TABLE delivery_pauses (
        scope text COLLATE "C" PRIMARY KEY,
        detail jsonb NOT NULL
      );
      CREATE TABLE dashboard_sessions (
        id_digest text COLLATE "C" PRIMARY KEY,
        principal jsonb NOT NULL,
        label text NOT NULL,
        csrf text NOT NULL,
        last_seen timestamptz NOT NULL
      );
      CREATE INDEX dashboard_sessions_last_seen ON dashboard_sessions (last_seen);`,
  },
  {
    version: 7,
    name: 'recipient database',
    // engine/recipient-db-postgres.ts: one row per account and address (fields as jsonb, the lists
    // traffic mailed it through, the counters the projection adds); the deletion marks of privacy
    // requests by pseudonym; each node's projection cursor, moved in the transaction that adds its counts.
    sql: `
      CREATE TABLE recipients (
        account text COLLATE "C" NOT NULL,
        address text COLLATE "C" NOT NULL,
        lists jsonb NOT NULL DEFAULT '[]',
        first_seen timestamptz NOT NULL,
        fields jsonb NOT NULL DEFAULT '{}',
        sent bigint NOT NULL DEFAULT 0,
        bounced bigint NOT NULL DEFAULT 0,
        complained bigint NOT NULL DEFAULT 0,
        last_sent timestamptz,
        last_opened timestamptz,
        last_clicked timestamptz,
        PRIMARY KEY (account, address)
      );
      CREATE TABLE recipient_erasures (
        account text COLLATE "C" NOT NULL,
        pseudonym text COLLATE "C" NOT NULL,
        at timestamptz NOT NULL,
        PRIMARY KEY (account, pseudonym)
      );
      CREATE TABLE recipient_counter_cursors (node text COLLATE "C" PRIMARY KEY, seq bigint NOT NULL);`,
  },
  {
    version: 8,
    name: 'statistics counters',
    // The installation's statistics (engine/events/stats-postgres.ts): the counters of engine/events/stats.ts
    // as rows, folded from the global event feed by whichever node holds the one stats_fold row; the
    // counts and the feed seq they reach commit in one transaction, so a fold is counted exactly once.
    // counts is {"<metric>": n}: a metric added later needs no new column.
    sql: `
      CREATE TABLE stats_counters (
        account text COLLATE "C" NOT NULL,
        gran text COLLATE "C" NOT NULL CHECK (gran IN ('h', 'd')),
        dim text COLLATE "C" NOT NULL,
        bucket text COLLATE "C" NOT NULL,
        value text COLLATE "C" NOT NULL,
        counts jsonb NOT NULL,
        PRIMARY KEY (account, gran, dim, bucket, value)
      );
      CREATE INDEX stats_counters_bucket ON stats_counters (gran, dim, bucket);
      CREATE TABLE stats_fold (id int PRIMARY KEY CHECK (id = 1), folded bigint NOT NULL);
      INSERT INTO stats_fold VALUES (1, 0);
      CREATE FUNCTION postino_add_counts(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
        SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb)
        FROM (SELECT k, sum(n)::bigint AS n FROM (SELECT key AS k, value::bigint AS n FROM jsonb_each_text(a)
                                                   UNION ALL SELECT key, value::bigint FROM jsonb_each_text(b)) x GROUP BY k) y
      $$;`,
  },
  {
    version: 9,
    name: 'reputation brake records',
    // The reputation brake's records for every node (engine/events/brake-records-postgres.ts): one row
    // per account it ever paused, paused or resumed with the figures and the resume baseline. Pauses
    // and resumes are claimed by conditional writes on the row, so one node decides and writes the event.
    sql: `
      CREATE TABLE brake_records (
        account text COLLATE "C" PRIMARY KEY,
        record jsonb NOT NULL
      );`,
  },
  {
    version: 10,
    name: 'shared webhook outbox',
    // engine/events/webhook-outbox-postgres.ts: per endpoint (account, endpoint id) and origin node
    // (the node that shipped the events), the cursor in the global feed and the state with the pending
    // batch (its webhook-id and exact body), held by one node at a time: `holder` until `lease_until`
    // (renewed every few seconds). Another node takes a row whose lease ran out (its holder is silent),
    // every write is fenced by `holder`, and `reclaim` is the origin asking its row back.
    sql: `
      CREATE TABLE webhook_outbox (
        account text COLLATE "C" NOT NULL,
        endpoint text COLLATE "C" NOT NULL,
        origin text COLLATE "C" NOT NULL,
        cursor bigint NOT NULL,
        state jsonb NOT NULL,
        holder text COLLATE "C" NOT NULL,
        lease_until timestamptz NOT NULL,
        reclaim boolean NOT NULL DEFAULT false,
        PRIMARY KEY (account, endpoint, origin)
      );
      CREATE INDEX webhook_outbox_holder ON webhook_outbox (holder);`,
  },
  {
    version: 11,
    name: 'account overlays and webhook endpoints',
    // What the accounts API and POST /api/webhooks change at runtime, the same for every node
    // (engine/accounts/account-store-postgres.ts, engine/events/webhook-endpoints-postgres.ts): one
    // row per account overlay and per API endpoint, each node re-reading both every 500 ms; the
    // account.changed history of every node in one table, newest first by its own id.
    sql: `
      CREATE TABLE account_overlays (account text COLLATE "C" PRIMARY KEY, overlay jsonb NOT NULL, changed_at timestamptz NOT NULL DEFAULT now());
      CREATE TABLE account_history (id bigserial PRIMARY KEY, account text COLLATE "C" NOT NULL, event jsonb NOT NULL);
      CREATE INDEX account_history_account ON account_history (account, id);
      CREATE TABLE webhook_endpoints (
        account text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        endpoint jsonb NOT NULL,
        PRIMARY KEY (account, id)
      );`,
  },
];

/** The schema version this code needs. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

export interface MigrateResult {
  applied: Array<{ version: number; name: string }>;
  /** The version after the run. */
  version: number;
}

/** Applies every pending migration, in order, in one locked transaction (see the header). */
export async function migrate(pool: PgPool, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrateResult> {
  const c = await pool.connect();
  let failed: Error | undefined;
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const done = new Set((await c.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    const applied: MigrateResult['applied'] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      try {
        await c.query(m.sql);
      } catch (e) {
        throw new Error(`migration ${m.version} (${m.name}) failed: ${(e as Error).message}`);
      }
      await c.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push({ version: m.version, name: m.name });
    }
    await c.query('COMMIT');
    return { applied, version: Math.max(0, ...done, ...applied.map((a) => a.version)) };
  } catch (e) {
    failed = e as Error;
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    c.release(failed);
  }
}

/** The applied version; 0 when nothing was ever migrated. */
export async function schemaVersion(pool: PgPool): Promise<number> {
  const t = await pool.query<{ t: string | null }>(`SELECT to_regclass('schema_migrations')::text AS t`);
  if (!t.rows[0]?.t) return 0;
  const r = await pool.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
  return r.rows[0]?.v ?? 0;
}

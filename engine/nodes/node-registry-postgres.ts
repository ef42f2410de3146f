/*
 * node-registry-postgres.ts — the nodes sharing one PostgreSQL
 * (node-registry.ts): each writes its row of `nodes` every HEARTBEAT_MS (an
 * upsert of its counters, one statement) and lists every row. While
 * PostgreSQL does not answer, the list is this node alone, as it is now
 * (the others cannot be known), and the heartbeat tries again next time.
 *
 * Side effects: a PostgreSQL statement per heartbeat; a timer.
 */
import type { Logger } from '../../common/log.js';
import { sharedQuery, type PgPool } from '../../common/storage/postgres/pool.js';
import { HEARTBEAT_MS, markSecretsDiffer, SILENT_AFTER_MS, type NodeFigures, type NodeRegistry, type NodeStatus } from './node-registry.js';

interface Row {
  node: string;
  started_at: Date;
  seen_at: Date;
  status: NodeFigures;
}

export class PgNodeRegistry implements NodeRegistry {
  private readonly startedAt = new Date();
  private readonly timer: NodeJS.Timeout;
  /** The nodes last warned about for different secrets: one log line per change, not per heartbeat. */
  private warnedDiffer = '';

  constructor(
    private readonly pool: PgPool,
    private readonly node: string,
    private readonly figures: () => NodeFigures,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => void this.beat(), HEARTBEAT_MS).unref();
    void this.beat();
  }

  /** Writes this node's row now; false when PostgreSQL did not take it. */
  async beat(): Promise<boolean> {
    try {
      await sharedQuery(
        this.pool,
        'node heartbeat',
        `INSERT INTO nodes (node, started_at, seen_at, status) VALUES ($1, $2, now(), $3)
         ON CONFLICT (node) DO UPDATE SET started_at = EXCLUDED.started_at, seen_at = now(), status = EXCLUDED.status`,
        [this.node, this.startedAt, JSON.stringify(this.figures())],
      );
    } catch (err) {
      this.log.debug({ err: { message: (err as Error).message } }, 'node heartbeat not written');
      return false;
    }
    const differ = (await this.list()).filter((n) => n.secretsDiffer && n.state === 'up').map((n) => n.node);
    if (differ.join() !== this.warnedDiffer) {
      this.warnedDiffer = differ.join();
      if (differ.length > 0)
        this.log.error({ event: 'secrets-differ', nodes: differ }, `nodes ${differ.join(', ')} have other token or pseudonym keys than this node: links one node signs fail on the other; copy data/secrets to every node`);
    }
    return true;
  }

  async list(): Promise<NodeStatus[]> {
    const self = (): NodeStatus => ({ node: this.node, startedAt: this.startedAt.toISOString(), seenAt: new Date().toISOString(), state: 'up', self: true, ...this.figures() });
    let rows: Row[];
    try {
      rows = (await sharedQuery<Row>(this.pool, 'nodes', 'SELECT node, started_at, seen_at, status FROM nodes ORDER BY node')).rows;
    } catch {
      return [self()];
    }
    const now = Date.now();
    return markSecretsDiffer(rows.map((r) =>
      r.node === this.node
        ? self()
        : { node: r.node, startedAt: r.started_at.toISOString(), seenAt: r.seen_at.toISOString(), state: now - r.seen_at.getTime() > SILENT_AFTER_MS ? 'silent' : 'up', self: false, ...r.status },
    ));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.beat();
  }
}

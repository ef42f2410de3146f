/*
 * node-registry.ts — the hosted nodes that make up this installation, as
 * `postino hosted status`, GET /api/queue and the dashboard's overview list
 * them (issue #14).
 *
 * A single node (LevelDB) lists itself, live. Nodes sharing a PostgreSQL
 * (storage.postgres) each write a heartbeat row every HEARTBEAT_MS with their
 * queue figures (node-registry-postgres.ts), and a node lists every row: one
 * not heard from for SILENT_AFTER_MS is shown `silent` (stopped, killed, cut
 * off) with its last figures, which is what an operator needs to see, since
 * its queue waits on its own disk until it is back.
 */

/** What a node reports about itself (cheap counters, no queue scan). */
export interface NodeFigures {
  /** Messages accepted by the listener, not yet rewrapped. */
  intake: number;
  /** Copies in the delivery queue (waiting, deferred, being sent). */
  queued: number;
  /** Records given up on (dead letter), all queues. */
  failed: number;
  /** Delivery paused for every account on this node. */
  pausedGlobal: boolean;
  /** Accounts paused on this node. */
  pausedAccounts: number;
  /** Fingerprint of the secrets every node must share (common/secrets-fingerprint.ts); absent from an older node. */
  secrets?: string;
}

export interface NodeStatus extends NodeFigures {
  node: string;
  startedAt: string;
  seenAt: string;
  state: 'up' | 'silent';
  /** This is the node that answered. */
  self: boolean;
  /** Its shared secrets differ from the answering node's (copy data/secrets). */
  secretsDiffer?: boolean;
}

/** Marks the nodes whose secrets fingerprint differs from the answering node's. */
export function markSecretsDiffer(list: NodeStatus[]): NodeStatus[] {
  const mine = list.find((n) => n.self)?.secrets;
  return list.map((n) => ({ ...n, secretsDiffer: mine !== undefined && n.secrets !== undefined && n.secrets !== mine }));
}

export interface NodeRegistry {
  list(): Promise<NodeStatus[]>;
  stop(): Promise<void>;
}

/** How often a node writes its heartbeat row. */
export const HEARTBEAT_MS = 10_000;
/** A node not heard from for three heartbeats is shown silent. */
export const SILENT_AFTER_MS = 3 * HEARTBEAT_MS;

/** The one node of a LevelDB install: itself, as it is now. */
export function singleNode(node: string, figures: () => NodeFigures, startedAt = new Date().toISOString()): NodeRegistry {
  return {
    async list() {
      return [{ node, startedAt, seenAt: new Date().toISOString(), state: 'up', self: true, ...figures() }];
    },
    async stop() {},
  };
}

/*
 * node-id.ts — this hosted node's name among several (issue #14): where its
 * events came from in the global feed (engine/events/event-shipper.ts) and
 * which node `status` rows are about. Made once, from the host name and a
 * random suffix, and kept in the node's own LevelDB (`node!id`): a node's
 * identity is its data folder (its queue), not its host, so two nodes on one
 * host differ and a node moved to another host with its data keeps its name.
 * Copying one node's data folder to make another would copy the name too:
 * start a new node on an empty folder.
 *
 * Side effects: one LevelDB write, the first time.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Store } from './store.js';

const KEY = 'node!id';

export async function ensureNodeId(store: Store): Promise<string> {
  const have = await store.db.get(KEY);
  if (have !== undefined) return have.toString('utf8');
  const host = os.hostname().toLowerCase().replace(/[^a-z0-9-]+/g, '-').slice(0, 40) || 'node';
  const id = `${host}-${randomBytes(4).toString('hex')}`;
  await store.commit([{ type: 'put', key: KEY, value: Buffer.from(id) }], { sync: true });
  return id;
}

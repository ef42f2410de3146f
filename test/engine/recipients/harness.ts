/*
 * A hosted API with only the recipient routes, on a real LevelDB and a real
 * HTTP port: the node key KEY, and account keys `key-<account>`.
 */
import path from 'node:path';
import type { Principal } from '../../../common/api-keys.js';
import { createHttpServer, listenHttp } from '../../../common/http-server.js';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { LevelRecipientDb } from '../../../engine/recipient-db.js';
import { RecipientEraser } from '../../../engine/recipients/erase.js';
import { RecipientProjection } from '../../../engine/recipients/projection.js';
import { Pseudonymizer } from '../../../engine/recipients/pseudonym.js';
import { registerRecipientRoutes } from '../../../engine/recipients/routes.js';
import { LevelSuppressionList, type SuppressionList } from '../../../engine/suppression.js';
import { tempDir } from '../../helpers/postino.js';

export const KEY = 'k'.repeat(43);
export const ACCOUNTS = ['acme', 'other'];

export interface RecipientsNode {
  dir: string;
  base: string;
  store: Store;
  events: EventLog;
  db: LevelRecipientDb;
  suppression: SuppressionList;
  projection: RecipientProjection;
  eraser: RecipientEraser;
  pseudonyms: Pseudonymizer;
  api(route: string, init?: { method?: string; body?: unknown; key?: string; raw?: string; contentType?: string }): Promise<Response>;
  close(): Promise<void>;
}

export async function startRecipientsNode(dir = tempDir('recipients')): Promise<RecipientsNode> {
  const store = await Store.open(path.join(dir, 'hosted'));
  const events = await EventLog.open(store);
  const log = createLogger('test', 'silent');
  const pseudonyms = new Pseudonymizer('p'.repeat(43));
  const db = new LevelRecipientDb(store, pseudonyms);
  const suppression = new LevelSuppressionList(store);
  const projection = new RecipientProjection({ store, events, db, log });
  const eraser = new RecipientEraser({ store, events, db, suppression, pseudonyms, log });
  const app = createHttpServer(async (t): Promise<Principal | undefined> => {
    if (t === KEY) return { kind: 'node' };
    const acct = /^key-(.+)$/.exec(t)?.[1];
    return acct ? { kind: 'account', account: acct, keyId: acct } : undefined;
  }, log);
  registerRecipientRoutes(app, { store, db, suppression, eraser, accounts: ACCOUNTS });
  const base = `http://127.0.0.1:${await listenHttp(app, { host: '127.0.0.1', port: 0, what: 'test', log })}`;
  await projection.start();
  eraser.start();
  return {
    dir,
    base,
    store,
    events,
    db,
    suppression,
    projection,
    eraser,
    pseudonyms,
    api: (route, init = {}) =>
      fetch(base + route, {
        method: init.method ?? 'GET',
        headers: { authorization: `Bearer ${init.key ?? KEY}`, ...(init.body !== undefined || init.raw !== undefined ? { 'content-type': init.contentType ?? 'application/json' } : {}) },
        body: init.raw ?? (init.body === undefined ? null : JSON.stringify(init.body)),
      }),
    async close() {
      await projection.stop();
      await eraser.stop();
      await app.close();
      await store.close();
    },
  };
}

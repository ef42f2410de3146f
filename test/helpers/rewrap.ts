/*
 * Runs the real rewrap pipeline on raw message bytes, with a real Store,
 * suppression list and recipient database in a temporary folder, and returns
 * each copy's bytes as delivery would send them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../common/config.js';
import { newQueueId } from '../../common/durable-queue.js';
import type { Envelope } from '../../common/smtp-intake.js';
import { Store } from '../../common/store.js';
import { bufferSource, type BodySource } from '../../engine/rewrap/body-source.js';
import { scanMime, walkParts } from '../../engine/rewrap/mime-scan.js';
import { LevelRecipientDb } from '../../engine/recipient-db.js';
import { rewrap, type RewrapResult } from '../../engine/rewrap/pipeline.js';
import { MessageContext, type RewrapSettings } from '../../engine/rewrap/context.js';
import { resolveRewrapSettings } from '../../engine/rewrap/settings.js';
import { LevelSuppressionList, type SuppressionList } from '../../engine/suppression.js';
import { CopyIndex } from '../../engine/feedback/copy-index.js';

export interface Env {
  dir: string;
  store: Store;
  suppression: SuppressionList;
  recipients: LevelRecipientDb;
  settings: RewrapSettings;
  close(): Promise<void>;
}

/** A store and settings for account "acme" with the given engine settings. */
export async function rewrapEnv(account: Record<string, unknown> = {}, engine: Record<string, unknown> = {}): Promise<Env> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-rewrap-'));
  const config = parseConfig({ accounts: [{ id: 'acme', engine: account }], engine: { publicUrl: 'https://mail.example.net', ...engine } });
  const settings = resolveRewrapSettings(config, dir).get('acme')!;
  const store = await Store.open(path.join(dir, 'hosted'));
  return {
    dir,
    store,
    suppression: new LevelSuppressionList(store),
    recipients: new LevelRecipientDb(store),
    settings,
    async close() {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface CopyOut {
  queueId: string;
  recipient: string;
  mailFrom: string;
  bytes: Buffer;
  text: string;
  headers: string;
  /** Copy.shared as bytes (its head, then the source from tailFrom): what a delivery record that refers to the intake body holds. */
  shared?: Buffer;
}

/**
 * `source`: read the message through this instead of a buffer source over `raw` (a test that watches the reads).
 * `noDoubleBrace`: as the listener records it when its DATA check saw no `{{` (IntakeMeta.noDoubleBrace).
 */
export async function runRewrap(env: Env, raw: Buffer | string, rcptTo: string[], mailFrom = 'shop@example.org', now = Date.now(), source?: BodySource, o: { noDoubleBrace?: boolean } = {}): Promise<{ result: RewrapResult; copies: CopyOut[]; msg: MessageContext }> {
  const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.replace(/\r?\n/g, '\r\n'));
  source ??= bufferSource(bytes);
  const mime = await scanMime(source.stream(0, source.size), undefined, source.size);
  const envelope: Envelope = { mailFrom, rcptTo, clientAddress: '127.0.0.1', heloName: 'app.test', receivedAt: now, tls: true };
  const msg = new MessageContext({ intakeId: 'INTAKE1', envelope, source, mime, parts: walkParts(mime), settings: env.settings, services: { suppression: env.suppression, recipients: env.recipients, copies: new CopyIndex(env.store) }, now, noDoubleBrace: o.noDoubleBrace ?? false });
  const copies: CopyOut[] = [];
  const result = await rewrap(msg, {
    newId: () => newQueueId(now),
    onCopy: async (copy) => {
      const chunks: Buffer[] = [];
      for await (const c of copy.body! as AsyncIterable<Buffer>) chunks.push(c);
      const b = Buffer.concat(chunks);
      const text = b.toString('utf8');
      // From `bytes`, not through `source`: a test watching the source's reads must see only the rewrap's.
      const shared = copy.shared && Buffer.concat([copy.shared.head, bytes.subarray(copy.shared.tailFrom)]);
      copies.push({ queueId: copy.queueId, recipient: copy.recipient, mailFrom: copy.mailFrom, bytes: b, text, headers: text.slice(0, text.indexOf('\r\n\r\n') + 2), ...(shared ? { shared } : {}) });
    },
  });
  return { result, copies, msg };
}

export function fixture(name: string): Buffer {
  return fs.readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'fixtures', name));
}

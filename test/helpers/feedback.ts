/*
 * The feedback side of a hosted node, really started on loopback port 0: the
 * bounce intake (SMTP) with its report worker loop, and the HTTP routes for
 * /u and /t, over a real LevelDB in a temporary folder. `copy()` records a
 * copy as the rewrap would and returns the addresses and links it carried.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig, type Config } from '../../common/config.js';
import { DurableQueue } from '../../common/durable-queue.js';
import { createHttpServer, listenHttp } from '../../common/http-server.js';
import { createLogger } from '../../common/log.js';
import type { PostinoEvent } from '../../common/events.js';
import { FileKeyRing } from '../../common/signing-keys.js';
import type { Intake } from '../../common/smtp-intake.js';
import { Store } from '../../common/store.js';
import { signClickToken, signOpenToken, signUnsubscribeToken, verpAddress } from '../../common/tokens.js';
import { newQueueId } from '../../common/durable-queue.js';
import { WorkerLoop } from '../../common/worker-loop.js';
import { EventLog } from '../../engine/events/event-log.js';
import { feedbackAddressBook, startBounceIntake, type FeedbackMeta } from '../../engine/feedback/bounce-intake.js';
import { CopyIndex, type CopyRecord } from '../../engine/feedback/copy-index.js';
import { registerFeedbackRoutes } from '../../engine/feedback/http-routes.js';
import { FeedbackRecorder } from '../../engine/feedback/recorder.js';
import { ReportWorker } from '../../engine/feedback/report-worker.js';
import { LevelSuppressionList, type SuppressionList } from '../../engine/suppression.js';
import { tempDir } from './postino.js';

export const BOUNCE_DOMAIN = 'bounce.postino.test';

export interface FeedbackNode {
  dir: string;
  config: Config;
  store: Store;
  events: EventLog;
  suppression: SuppressionList;
  copies: CopyIndex;
  keys: FileKeyRing;
  reports: ReportWorker;
  smtpPort: number;
  base: string;
  /** Records a copy as the rewrap does; returns it with its VERP address and links. */
  copy(recipient: string, o?: { account?: string; list?: string; due?: number; messageId?: string }): Promise<TestCopy>;
  /** Every event so far. */
  feed(): Promise<PostinoEvent[]>;
  close(): Promise<void>;
}

export interface TestCopy extends CopyRecord {
  verp: string;
  unsubscribeUrl: string;
  openUrl: string;
  clickUrl(url: string): string;
}

/** `suppressionOf`: the suppression list's backend on the node's store (default LevelDB). */
export async function startFeedbackNode(extra: Record<string, unknown> = {}, suppressionOf: (store: Store) => SuppressionList = (store) => new LevelSuppressionList(store)): Promise<FeedbackNode> {
  const dir = tempDir('feedback');
  const config = parseConfig({ engine: { bounceDomain: BOUNCE_DOMAIN }, feedback: { port: 0 }, accounts: [{ id: 'acme' }, { id: 'other' }], ...extra });
  const log = createLogger('test', 'silent');
  const store = await Store.open(path.join(dir, 'hosted'));
  const events = await EventLog.open(store);
  const suppression = suppressionOf(store);
  const copies = new CopyIndex(store);
  const keys = FileKeyRing.open(dir);
  const queue = await DurableQueue.open<FeedbackMeta>(store, 'feedback');
  const recorder = new FeedbackRecorder({ store, events, suppression, copies, config: config.feedback, log });
  const reports = new ReportWorker({ queue, recorder, copies, keys, book: feedbackAddressBook(config), reportsDir: path.join(dir, 'hosted', 'reports'), log });
  const loop = new WorkerLoop<FeedbackMeta>({ queue, concurrency: 2, visibilityMs: 60_000, handle: (r) => reports.handle(r), log });
  const intake: Intake = await startBounceIntake({ config, queue, copies, keys, log });
  const app = createHttpServer('api-key-not-used-here-'.padEnd(40, 'x'), log);
  registerFeedbackRoutes(app, { keys, recorder, log });
  const httpPort = await listenHttp(app, { host: '127.0.0.1', port: 0, what: 'test', log });
  loop.start();
  const base = `http://127.0.0.1:${httpPort}`;
  return {
    dir,
    config,
    store,
    events,
    suppression,
    copies,
    keys,
    reports,
    smtpPort: intake.port,
    base,
    async copy(recipient, o = {}) {
      const rec: CopyRecord = { queueId: newQueueId(), account: o.account ?? 'acme', recipient, sender: 'shop@example.org', messageId: o.messageId ?? `<${Math.random().toString(36).slice(2)}@shop.example.org>`, list: o.list, stream: 'bulk', tag: 'order-1', metadata: { customer: 'c-77' }, due: o.due ?? Date.now() - 60_000 };
      await store.commit(copies.putOps(rec), { sync: true });
      const claim = { account: rec.account, queueId: rec.queueId, recipient };
      return {
        ...rec,
        verp: verpAddress(keys, 'bounces', BOUNCE_DOMAIN, rec.queueId, recipient),
        unsubscribeUrl: `${base}/u/${signUnsubscribeToken(keys, { ...claim, list: o.list ?? '' })}`,
        openUrl: `${base}/t/o/${signOpenToken(keys, claim)}`,
        clickUrl: (url) => `${base}/t/c/${signClickToken(keys, { ...claim, url })}`,
      };
    },
    feed: () => events.read(0, 1_000_000),
    async close() {
      await intake.close();
      await loop.stop();
      await app.close();
      await suppression.close();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An ARF complaint (RFC 5965) sent to `to`, quoting the complained-about message's header lines. */
export function arfComplaint(to: string, quoted: readonly string[]): string {
  return [
    'From: feedback@fbl.example.net',
    `To: ${to}`,
    'Subject: complaint about message',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"',
    '',
    '--arf',
    'Content-Type: text/plain',
    '',
    'This is an email abuse report.',
    '--arf',
    'Content-Type: message/feedback-report',
    '',
    'Feedback-Type: abuse',
    'User-Agent: ExampleFBL/1.0',
    'Version: 1',
    '',
    '--arf',
    'Content-Type: text/rfc822-headers',
    '',
    ...quoted,
    '',
    '--arf--',
    '',
  ].join('\r\n');
}

/** An RFC 3464 DSN about `recipient`, sent to `verp`. */
export function dsn(verp: string, recipient: string, status: string, diagnostic: string, action = 'failed'): string {
  return [
    'From: MAILER-DAEMON@mx.example.net (Mail Delivery System)',
    `To: ${verp}`,
    'Subject: Undelivered Mail Returned to Sender',
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain',
    '',
    `<${recipient}>: ${diagnostic}`,
    '',
    '--b1',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.example.net',
    '',
    `Final-Recipient: rfc822; ${recipient}`,
    `Action: ${action}`,
    `Status: ${status}`,
    `Diagnostic-Code: smtp; ${diagnostic}`,
    '',
    '--b1--',
    '',
  ].join('\r\n');
}

/** Polls `check` every 20 ms until it returns a value, or fails after `ms`. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false>, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

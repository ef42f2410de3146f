/*
 * RelayWorker, one outcome per test, on a real spool (LevelDB in a temp folder)
 * with an injected clock and a scripted client: no sleeps, no sockets.
 * delivered, partial, deferred on 4xx along the schedule, failed on 5xx,
 * give-up past the maximum age, and the relay-down path: nothing charged, the
 * probe schedule growing to its maximum over a ten-minute outage, one log line
 * per state change, and release (oldest first) when a probe succeeds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Readable } from 'node:stream';
import { pino } from 'pino';
import { DurableQueue, type QueueRecord } from '../../common/durable-queue.js';
import { RelayHealth } from '../../common/relay-health.js';
import type { RetryPolicy } from '../../common/retry-schedule.js';
import { SendFailure, type BodySource, type RecipientFailure, type RelaySender, type SendOutcome, type SmtpReply } from '../../common/smtp-client.js';
import { Store } from '../../common/store.js';
import { bodyPieces } from '../../common/smtp-session.js';
import { RelayWorker } from '../../forwarder/relay-worker.js';
import type { SpoolMeta } from '../../forwarder/spool-record.js';
import { tempDir } from '../helpers/postino.js';

/** The defaults of forwarder.retry and forwarder.relay.probeScheduleSeconds (common/config.ts). */
const RETRY: RetryPolicy = { scheduleSeconds: [300, 600, 1200, 2400, 3600], maxAgeSeconds: 5 * 24 * 3600 };
const PROBES = [1, 2, 3, 5, 5, 5, 10, 15];
const RELAY = 'smtp://127.0.0.1:2587';
const VISIBILITY_MS = 600_000;

type Script = (envelope: { from: string; to: string[] }) => Promise<SendOutcome>;

interface Rig {
  clock: { t: number };
  spool: DurableQueue<SpoolMeta>;
  worker: RelayWorker<SpoolMeta>;
  health: RelayHealth;
  /** Whether the listener would accept a connection (scripts and probes look). */
  listener: { up: boolean };
  /** What the reachable listener answers. */
  script: { send: Script };
  failed: Array<{ id: string; failed: RecipientFailure[]; reason: string }>;
  logs: Array<Record<string, unknown>>;
  enqueue(to?: string[]): Promise<QueueRecord<SpoolMeta>>;
  /** Leases what is due now and hands each to the worker. */
  relayDue(): Promise<QueueRecord<SpoolMeta>[]>;
  close(): Promise<void>;
}

const ok = (reply = '250 2.0.0 queued'): SmtpReply => ({ code: 250, enhanced: '2.0.0', response: reply });

/** A script for a reachable listener that refuses the whole transaction with `reply` ("451 4.7.1 greylisted"). */
function refuses(reply: string): Script {
  const [code, enhanced] = reply.split(' ');
  return async () => {
    throw new SendFailure(reply, { code: Number(code), enhanced: enhanced!, response: reply }, RELAY);
  };
}

async function rig(): Promise<Rig> {
  const clock = { t: Date.UTC(2026, 10, 25, 10, 0, 0) };
  const now = (): number => clock.t;
  const store = await Store.open(tempDir('relay-worker'));
  const spool = await DurableQueue.open<SpoolMeta>(store, 'spool', { clock: now });
  const logs: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const listener = { up: true };
  const script: { send: Script } = { send: async () => ({ relay: RELAY, dsn: false, accepted: [], rejected: [], reply: ok() }) };
  const health = new RelayHealth({
    relays: [RELAY],
    probeScheduleSeconds: PROBES,
    probe: async () => {
      if (!listener.up) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:2587'), { code: 'ECONNECTION' });
    },
    held: () => spool.size,
    unit: 'messages',
    log,
    clock: now,
    setTimer: () => () => undefined, // the test runs the probes itself (health.probeDue)
  });
  // What RelayClient does: skip a down relay, mark it down when it cannot be reached.
  const client: RelaySender = {
    health,
    async send(envelope, openBody: () => Promise<BodySource>) {
      if (health.isUp(RELAY)) {
        if (listener.up) {
          const body = await openBody();
          if (!bodyPieces(body)) (body as Readable).resume();
          return script.send(envelope);
        }
        health.markDown(RELAY, { code: 'ECONNECTION', message: 'connect ECONNREFUSED 127.0.0.1:2587' });
      }
      throw new SendFailure('no relay reachable: connect ECONNREFUSED 127.0.0.1:2587', undefined, undefined);
    },
  };
  const failed: Rig['failed'] = [];
  const worker = new RelayWorker<SpoolMeta>({ spool, client, retry: RETRY, log, clock: now, onFailed: async (rec, f, reason) => void failed.push({ id: rec.id, failed: f, reason }) });
  return {
    clock,
    spool,
    worker,
    health,
    listener,
    script,
    failed,
    logs,
    async enqueue(to = ['ada@example.com']) {
      const rec = await spool.enqueue({
        meta: { envelope: { mailFrom: 'shop@example.org', rcptTo: to, clientAddress: '127.0.0.1', heloName: 'app.test', receivedAt: now(), tls: false }, pending: to },
        body: Buffer.from('Subject: hi\r\n\r\nhello\r\n'),
      });
      clock.t += 1; // distinct arrival times, so "oldest first" is observable
      return rec;
    },
    async relayDue() {
      const batch = await spool.lease(100, VISIBILITY_MS);
      for (const rec of batch) await worker.handle(rec);
      return batch;
    },
    async close() {
      health.close();
      await store.close();
    },
  };
}

/** Runs `fn` on a fresh rig and closes it whatever happens. */
async function withRig(fn: (r: Rig) => Promise<void>): Promise<void> {
  const r = await rig();
  try {
    await fn(r);
  } finally {
    await r.close();
  }
}

test('delivered: every recipient accepted, the message leaves the spool', () =>
  withRig(async (r) => {
    await r.enqueue(['a@example.com', 'b@example.com']);
    await r.relayDue();
    assert.equal(r.spool.size, 0);
    assert.deepEqual(r.worker.counters, { delivered: 1, deferred: 0, failed: 0, held: 0 });
    assert.ok(r.logs.some((l) => l.event === 'relayed' && l.queueId));
  }));

test('partial: the 5xx recipient fails (onFailed), the 4xx one is retried on the schedule, the accepted one is not sent again', () =>
  withRig(async (r) => {
    r.script.send = async () => ({
      relay: RELAY,
      dsn: false,
      accepted: ['a@example.com'],
      rejected: [
        { recipient: 'b@example.com', code: 451, enhanced: '4.3.0', response: '451 4.3.0 try later' },
        { recipient: 'c@example.com', code: 550, enhanced: '5.1.1', response: '550 5.1.1 no such user' },
      ],
      reply: ok(),
    });
    const rec = await r.enqueue(['a@example.com', 'b@example.com', 'c@example.com']);
    const t0 = r.clock.t;
    await r.relayDue();
    const after = (await r.spool.get(rec.id))!;
    assert.deepEqual(after.meta.pending, ['b@example.com']);
    assert.equal(after.due, t0 + 300_000, 'first retry after 300 s');
    assert.equal(after.attempts, 1);
    assert.deepEqual(r.failed.map((f) => f.failed.map((x) => x.recipient)), [['c@example.com']]);
    assert.deepEqual(r.worker.counters, { delivered: 0, deferred: 1, failed: 1, held: 0 });
  }));

test('deferred on 4xx: retried after 300, 600, 1200 s, each attempt counted, the reply kept as last error', () =>
  withRig(async (r) => {
    r.script.send = refuses('451 4.7.1 greylisted');
    const rec = await r.enqueue();
    const waits: number[] = [];
    for (let i = 0; i < 3; i++) {
      const [leased] = await r.relayDue();
      assert.equal(leased!.attempts, i + 1);
      const after = (await r.spool.get(rec.id))!;
      waits.push((after.due - r.clock.t) / 1000);
      assert.equal(after.meta.lastError?.code, 451);
      assert.deepEqual(await r.spool.lease(1, VISIBILITY_MS), [], 'not due before its time');
      r.clock.t = after.due;
    }
    assert.deepEqual(waits, [300, 600, 1200]);
    assert.equal(r.worker.counters.deferred, 3);
    assert.equal(r.health.isUp(RELAY), true, 'a 4xx is an answer: the relay stays up');
  }));

test('failed on 5xx: removed, every pending recipient handed to onFailed', () =>
  withRig(async (r) => {
    r.script.send = refuses('554 5.7.1 rejected');
    await r.enqueue(['a@example.com', 'b@example.com']);
    await r.relayDue();
    assert.equal(r.spool.size, 0);
    assert.deepEqual(r.failed[0]!.failed.map((f) => [f.recipient, f.code]), [['a@example.com', 554], ['b@example.com', 554]]);
    assert.equal(r.worker.counters.failed, 2);
  }));

test('give-up: a 4xx past retry.maxAgeSeconds fails the message instead of deferring it', () =>
  withRig(async (r) => {
    r.script.send = refuses('451 4.3.0 later');
    await r.enqueue();
    r.clock.t += RETRY.maxAgeSeconds * 1000;
    await r.relayDue();
    assert.equal(r.spool.size, 0);
    assert.match(r.failed[0]!.reason, /longer than the maximum of 432000 s; last error: 451 4\.3\.0 later/);
    assert.equal(r.worker.counters.deferred, 0);
  }));

test('relay down for ten minutes: nothing charged, the spool holds, probes grow to 15 s, two log lines, release oldest first on the first good probe', () =>
  withRig(async (r) => {
    const recs = [await r.enqueue(), await r.enqueue(), await r.enqueue()];
    r.listener.up = false;
    const downAt = r.clock.t;
    // Leased and handed over in reverse: the release puts them back in arrival order anyway.
    const batch = await r.spool.lease(10, VISIBILITY_MS);
    for (const rec of [...batch].reverse()) await r.worker.handle(rec);

    assert.equal(r.health.allDown, true);
    assert.ok(r.worker.holdMs() > 0, 'the loop holds while the relay is down');
    assert.deepEqual(r.worker.counters, { delivered: 0, deferred: 0, failed: 0, held: 3 });
    for (const rec of recs) {
      const back = (await r.spool.get(rec.id))!;
      assert.equal(back.attempts, 0, 'no attempt charged');
      assert.equal(back.meta.lastError, undefined, 'not deferred: no per-message error');
      assert.equal(back.due, rec.enqueuedAt, 'due at its arrival time');
    }
    assert.equal(r.spool.tallied, 0);

    // Ten minutes of failed probes, driven by the clock.
    const intervals: number[] = [];
    let last = downAt;
    while (r.clock.t - downAt < 10 * 60_000) {
      const st = r.health.status()[0]!;
      const next = Date.parse(st.nextProbeAt!);
      r.clock.t = next;
      await r.health.probeDue();
      intervals.push((next - last) / 1000);
      last = next;
    }
    assert.deepEqual(intervals.slice(0, 10), [1, 2, 3, 5, 5, 5, 10, 15, 15, 15], 'a few seconds, growing to the maximum');
    assert.ok(intervals.slice(7).every((s) => s === 15), 'then at the maximum for the rest of the outage');
    console.log(`# relay-worker: 10-minute outage, ${intervals.length} probes, intervals ${intervals.slice(0, 9).join(', ')}, … (max 15 s)`);
    const st = r.health.status()[0]!;
    assert.equal(st.state, 'down');
    assert.equal(st.held, 3);
    assert.equal(st.nextProbeInSeconds, 15);
    assert.match(st.lastError!, /ECONNREFUSED/);
    for (const rec of recs) assert.equal((await r.spool.get(rec.id))!.attempts, 0, 'still nothing charged after ten minutes');

    const down = r.logs.filter((l) => l.event === 'relay-down');
    assert.equal(down.length, 1, 'one line when it went down');
    assert.equal(down[0]!.msg, 'relay down, holding 3 messages, next probe in 1 s');
    assert.equal(r.logs.filter((l) => l.event === 'held' || l.event === 'deferred').every((l) => l.level === 20), true, 'per-message lines only at debug');

    // The listener returns: the next probe finds it, the hold ends, the held mail leaves oldest first.
    r.listener.up = true;
    r.clock.t = Date.parse(r.health.status()[0]!.nextProbeAt!);
    await r.health.probeDue();
    assert.equal(r.health.status()[0]!.state, 'up');
    assert.equal(r.worker.holdMs(), 0);
    const upLines = r.logs.filter((l) => l.event === 'relay-up');
    assert.equal(upLines.length, 1);
    assert.match(String(upLines[0]!.msg), /^relay up after 6\d\d s, releasing 3 messages$/);
    const released = await r.spool.lease(10, VISIBILITY_MS);
    assert.deepEqual(released.map((x) => x.id), recs.map((x) => x.id), 'in arrival order');
    assert.deepEqual(released.map((x) => x.attempts), [1, 1, 1], 'the first real attempt is the first one counted');
    for (const rec of released) await r.worker.handle(rec);
    assert.equal(r.spool.size, 0);
    assert.equal(r.worker.counters.delivered, 3);
    assert.equal(r.logs.filter((l) => l.event === 'relay-down' || l.event === 'relay-up').length, 2, 'two lines for the whole outage');
  }));

test('relay down past retry.maxAgeSeconds: the message fails (its DSN waits for the same listener) instead of being held', () =>
  withRig(async (r) => {
    await r.enqueue();
    r.listener.up = false;
    r.clock.t += RETRY.maxAgeSeconds * 1000;
    await r.relayDue();
    assert.equal(r.spool.size, 0);
    assert.match(r.failed[0]!.reason, /longer than the maximum.*no relay reachable/);
  }));

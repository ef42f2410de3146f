/*
 * The listener's spool-id dedupe over raw SMTP: an id is trusted only as far as
 * it can hurt its own sender. Remembered per account (another account's message
 * with the same id is queued), and only an id of the forwarder's shape counts
 * (anything else is stripped and the message is a new one).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { newQueueId } from '../../common/durable-queue.js';
import { startTestListener, type TestListener } from '../helpers/listener.js';
import { message, open, send } from '../helpers/smtp-session.js';

describe('spool-id dedupe', () => {
  let l: TestListener;
  before(async () => {
    l = await startTestListener(
      {
        accounts: [
          { id: 'acme', networks: ['127.0.0.1/32'], listener: { requireTls: false } },
          { id: 'beta', networks: ['127.0.0.2/32'], listener: { requireTls: false } },
        ],
      },
      { spoolIds: true },
    );
  });
  after(async () => l.close());

  async function submit(local: string, spoolId: string, subject: string): Promise<string> {
    const c = await open(l.port, { local });
    try {
      return await send(c, 'shop@example.org', ['ada@example.com'], `X-Postino-Spool-Id: ${spoolId}\r\n${message(subject)}`);
    } finally {
      c.close();
    }
  }

  async function subjects(): Promise<string[]> {
    return (await l.messages()).map((m) => /^Subject: (.*)$/m.exec(m.body)?.[1] ?? '').sort();
  }

  test('a retry from the same account is answered 250 (already queued) and not queued twice', async () => {
    const id = newQueueId();
    assert.match(await submit('127.0.0.1', id, 'retry-1'), /^250 /);
    assert.match(await submit('127.0.0.1', id, 'retry-1'), /^250 .*already queued/);
    assert.deepEqual((await subjects()).filter((s) => s.startsWith('retry')), ['retry-1']);
    // The engine sends a forwarded message's DSNs without NOTIFY (dsn-notices.ts): the record says so.
    const [m] = (await l.messages()).filter((x) => x.body.includes('retry-1'));
    assert.equal(m?.meta.forwarded, true);
  });

  test("another account's message with the same id is queued: ids are scoped to the account", async () => {
    const id = newQueueId();
    assert.match(await submit('127.0.0.1', id, 'scope-acme'), /^250 /);
    const r = await submit('127.0.0.2', id, 'scope-beta');
    assert.match(r, /^250 /);
    assert.doesNotMatch(r, /already queued/);
    const msgs = (await l.messages()).filter((m) => m.body.includes('scope-'));
    assert.deepEqual(msgs.map((m) => m.meta.account).sort(), ['acme', 'beta']);
  });

  test('an id not of the forwarder shape is stripped and ignored: two messages, both queued', async () => {
    assert.match(await submit('127.0.0.1', 'S1', 'shape-1'), /^250 /);
    const r = await submit('127.0.0.1', 'S1', 'shape-2');
    assert.match(r, /^250 /);
    assert.doesNotMatch(r, /already queued/);
    const msgs = (await l.messages()).filter((m) => m.body.includes('shape-'));
    assert.equal(msgs.length, 2);
    for (const m of msgs) assert.doesNotMatch(m.body, /X-Postino-Spool-Id/i, 'the header never goes further');
    for (const m of msgs) assert.equal(m.meta.forwarded, undefined, 'not a forwarder\'s id: not marked forwarded');
    assert.ok(l.logs.some((e) => e.event === 'spool-id-ignored'));
  });
});

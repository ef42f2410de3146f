/*
 * The listener records what its DATA check saw (common/strict-data.ts): `noDoubleBrace`
 * when `{{` is nowhere in the message, whatever the TCP segments; absent when it is,
 * even split between two segments or deep in a large body. The rewrap then skips reading
 * parts for merge tags (engine/rewrap/context.ts mayContain; test/engine/rewrap/part-probe.test.ts).
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startTestListener, type TestListener } from '../helpers/listener.js';
import { message, open } from '../helpers/smtp-session.js';

describe('listener DATA facts', () => {
  let l: TestListener;
  before(async () => {
    l = await startTestListener({ accounts: [{ id: 'acme', networks: ['127.0.0.1/32'], listener: { requireTls: false } }] });
  });
  after(async () => l.close());

  /** One transaction whose DATA goes out in `pieces`, one TCP write each, 30 ms apart. */
  async function submit(pieces: string[]): Promise<string> {
    const c = await open(l.port);
    try {
      assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250/);
      assert.match(await c.cmd('RCPT TO:<ada@example.com>'), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      for (const p of pieces) {
        c.write(p);
        await sleep(30);
      }
      c.write('\r\n.\r\n');
      return await c.reply(30_000);
    } finally {
      c.close();
    }
  }

  async function metaOf(subject: string) {
    const m = (await l.messages()).find((x) => x.body.includes(`Subject: ${subject}\r\n`));
    assert.ok(m, subject);
    return m.meta;
  }

  test('no `{{` anywhere (single braces, `{ {`, braces on two lines): noDoubleBrace', async () => {
    assert.match(await submit([message('plain', 'Hi {name}, { {x} }, {\r\n{ and } } }}')]), /^250 /);
    assert.equal((await metaOf('plain')).noDoubleBrace, true);
  });

  test('no line that starts with a dot: cleanLines; a dot-stuffed line anywhere, or split from its line break by a TCP write: not', async () => {
    assert.match(await submit([message('lines', 'a.b\r\n x.\r\n\r\nend.')]), /^250 /);
    assert.equal((await metaOf('lines')).cleanLines, true);
    // On the wire a content line that starts with a dot is sent with two (RFC 5321 4.5.2).
    for (const [subject, pieces] of [
      ['dot body', [message('dot body', 'first\r\n..second\r\n')]],
      ['dot split', [message('dot split', 'first\r\n'), '..second']],
      ['dot last', [message('dot last', 'first\r\n..')]],
      ['dot first', ['..x: y\r\nSubject: dot first\r\n\r\nbody']],
    ] as Array<[string, string[]]>) {
      assert.match(await submit(pieces), /^250 /, subject);
      assert.equal((await metaOf(subject)).cleanLines, undefined, subject);
    }
  });

  test('`{{` in one segment, split between two, in the subject, or 300 KB into the body: not noDoubleBrace', async () => {
    const filler = 'The quick brown fox jumps over the lazy dog.\r\n'.repeat(7000);
    const cases: Array<[string, string[]]> = [
      ['one', [message('one', 'Dear {{first}},')]],
      ['split', [message('split', 'Dear {'), '{first}},']],
      ['subject {{first}}', [message('subject {{first}}', 'Hello.')]],
      ['deep', [message('deep', filler + 'Dear {{first}},\r\n' + filler)]],
    ];
    for (const [subject, pieces] of cases) {
      assert.match(await submit(pieces), /^250 /, subject);
      const meta = await metaOf(subject);
      assert.equal(meta.noDoubleBrace, undefined, subject);
      assert.equal(meta.account, 'acme');
    }
  });
});

/*
 * One account's allowInsecureAuth (a lab) offers AUTH before STARTTLS only to
 * clients in that account's own networks: every other client sees AUTH only
 * after STARTTLS, and AUTH in clear from one of them gets 538 5.7.11.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashPassword } from '../../common/password-hash.js';
import { RawSmtp } from '../helpers/smtp-raw.js';
import { startTestListener, type TestListener } from '../helpers/listener.js';

const FAST = { N: 1024, r: 8, p: 1 };

describe('AUTH before STARTTLS is per account', () => {
  let l: TestListener;
  before(async () => {
    l = await startTestListener({
      accounts: [
        { id: 'shop', networks: ['127.0.0.1/32'], listener: { users: [{ username: 'shop-app', passwordHash: await hashPassword('right', FAST) }] } },
        { id: 'lab', networks: ['127.0.0.2/32'], listener: { allowInsecureAuth: true, requireTls: false, users: [{ username: 'lab-app', passwordHash: await hashPassword('lab', FAST) }] } },
      ],
    });
  });
  after(async () => l.close());

  async function ehlo(local: string): Promise<{ c: RawSmtp; reply: string }> {
    const c = await RawSmtp.connect(l.port, '127.0.0.1', local);
    await c.reply();
    return { c, reply: await c.cmd('EHLO client.test') };
  }

  test("a client of the lab account is offered AUTH in clear, and logs in", async () => {
    const { c, reply } = await ehlo('127.0.0.2');
    try {
      assert.match(reply, /^250[ -]AUTH PLAIN LOGIN/m);
      assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0lab-app\0lab').toString('base64')}`), /^235 /);
    } finally {
      c.close();
    }
  });

  test('a client of another account is not offered AUTH before STARTTLS, and AUTH in clear gets 538', async () => {
    const { c, reply } = await ehlo('127.0.0.1');
    try {
      assert.doesNotMatch(reply, /AUTH/);
      assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0shop-app\0right').toString('base64')}`), /^538 5\.7\.11 /);
      assert.match(await c.cmd('STARTTLS'), /^220 /);
      await c.startTls({ ca: l.ca });
      assert.match(await c.cmd('EHLO client.test'), /^250[ -]AUTH PLAIN LOGIN/m, 'offered after STARTTLS');
      assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0shop-app\0right').toString('base64')}`), /^235 /);
    } finally {
      c.close();
    }
  });
});

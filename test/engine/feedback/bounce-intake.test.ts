/*
 * The bounce intake over real SMTP: who it accepts mail for, and what each
 * real-world-shaped report (test/fixtures/feedback/) does to the suppression
 * list and the event feed once it is sent to the VERP address of a copy.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { PostinoEvent } from '../../../common/events.js';
import { readReport } from '../../../engine/feedback/report.js';
import { arfComplaint, BOUNCE_DOMAIN, dsn, startFeedbackNode, until, type FeedbackNode, type TestCopy } from '../../helpers/feedback.js';
import { RawSmtp } from '../../helpers/smtp-raw.js';
import { open, send } from '../../helpers/smtp-session.js';

const FIXTURES = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'fixtures', 'feedback');
const FIXTURE_VERP = /bounces\+[0-9a-z]+(?:-[0-9a-z]+)?-[a-z2-7]+@bounce\.postino\.test/gi;

interface Expected {
  kind: 'bounce' | 'complaint' | 'auto-reply' | 'unclassified';
  class?: 'hard' | 'soft' | 'block' | 'none';
  status?: string;
  recipient?: string;
}
const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')) as Record<string, Expected>;

let n: FeedbackNode;
before(async () => {
  n = await startFeedbackNode();
});
after(async () => n.close());

/** One message over a fresh session; `body` is taken byte for byte (latin1), CRLF and dot-stuffed. */
async function deliver(to: string, body: string, from = ''): Promise<string> {
  const c = await open(n.smtpPort);
  try {
    for (const [cmd, want] of [[`MAIL FROM:<${from}>`, /^250/], [`RCPT TO:<${to}>`, /^250/], ['DATA', /^354/]] as const) {
      const r = await c.cmd(cmd);
      if (!want.test(r)) return r;
    }
    c.write(Buffer.from(body.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..') + '\r\n.\r\n', 'latin1'));
    return await c.reply(30_000);
  } finally {
    c.socket.destroy();
  }
}

const eventsFor = async (c: TestCopy, type: string): Promise<PostinoEvent[]> => (await n.feed()).filter((e) => e.type === type && e.queueId === c.queueId);
/** The copy's bounced events once there is one (undefined before): one read of the feed per poll. */
const bouncedOf = async (c: TestCopy): Promise<PostinoEvent[] | undefined> => {
  const evs = await eventsFor(c, 'bounced');
  return evs.length > 0 ? evs : undefined;
};

describe('who the intake takes mail for', () => {
  test('550 5.1.1 for anyone else: other local parts, other domains, forged or changed VERP tokens', async () => {
    const c = await n.copy('ada@example.com');
    const s = await open(n.smtpPort);
    try {
      assert.match(await s.cmd('MAIL FROM:<>'), /^250/);
      for (const bad of [
        'postmaster@example.org',
        `someone@${BOUNCE_DOMAIN}`,
        c.verp.replace(BOUNCE_DOMAIN, 'bounce.elsewhere.test'),
        c.verp.replace(/.(@)/, (m, at: string) => (m[0] === 'a' ? 'b' : 'a') + at), // last MAC character changed
        c.verp.replace(/\+(.)/, (m, ch: string) => `+${ch === '0' ? '1' : '0'}`), // another queue id
        `bounces+${'0'.repeat(17)}-1-${'a'.repeat(16)}@${BOUNCE_DOMAIN}`, // well formed, names no copy
      ]) {
        assert.match(await s.cmd(`RCPT TO:<${bad}>`), /^550 5\.1\.1 /, bad);
      }
      for (const good of [c.verp, c.verp.toUpperCase(), `fbl@${BOUNCE_DOMAIN}`, `UNSUBSCRIBE@${BOUNCE_DOMAIN.toUpperCase()}`]) {
        assert.match(await s.cmd(`RCPT TO:<${good}>`), /^250 /, good);
      }
    } finally {
      s.socket.destroy();
    }
  });
});

describe('what each report does', () => {
  test('a 5.1.1 DSN to the VERP address suppresses the recipient within 1 s, with a bounced event of class hard', async () => {
    const c = await n.copy('nobody@hard.test');
    const t0 = Date.now();
    assert.match(await deliver(c.verp, dsn(c.verp, c.recipient, '5.1.1', '550 5.1.1 <nobody@hard.test>: Recipient address rejected: User unknown')), /^250 /);
    const entry = await until('the suppression', () => n.suppression.get('acme', 'nobody@hard.test'), 1_000);
    const ms = Date.now() - t0;
    assert.equal(entry.reason, 'hard-bounce');
    assert.equal(entry.queueId, c.queueId);
    // The event rides in the suppression's batch; the feed shows it once the event log has settled
    // that commit (a moment after the batch lands), so it is waited for as in the tests below.
    const [ev] = await until('the bounced event', () => bouncedOf(c), 1_000);
    assert.deepEqual(ev!.bounce, { class: 'hard', status: '5.1.1', source: 'dsn' });
    assert.equal(ev!.suppressedNow, true);
    assert.equal(ev!.report?.format, 'dsn');
    assert.equal(ev!.messageId, c.messageId);
    assert.equal(ev!.tag, 'order-1');
    console.log(`# DSN accepted → suppressed in ${ms} ms`);
  });

  test('a 5.7.1 spam block is the sender’s problem: bounced (class block), the recipient not suppressed', async () => {
    const c = await n.copy('mallory@example.net');
    await deliver(c.verp, dsn(c.verp, c.recipient, '5.7.1', '554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org'));
    const [ev] = await until('the bounced event', () => bouncedOf(c));
    assert.equal(ev!.bounce?.class, 'block');
    assert.equal(await n.suppression.get('acme', c.recipient), undefined);
  });

  test('soft bounces are counted; the 5th within 14 days (the defaults) suppresses', async () => {
    const copies: TestCopy[] = [];
    for (let i = 0; i < 5; i++) copies.push(await n.copy('full@example.com'));
    for (const [i, c] of copies.entries()) {
      await deliver(c.verp, dsn(c.verp, c.recipient, '5.2.2', '552 5.2.2 Mailbox full'));
      await until(`soft bounce ${i + 1}`, async () => (await eventsFor(c, 'bounced')).length === 1);
      const s = await n.suppression.get('acme', 'full@example.com');
      assert.equal(s?.reason, i < 4 ? undefined : 'soft-bounces', `after ${i + 1} soft bounces`);
    }
  });

  test('an out-of-office reply to a VERP address is not a bounce: no event, no suppression', async () => {
    const c = await n.copy('olga@example.com');
    const ooo = `From: Olga <olga@example.com>\nTo: ${c.verp}\nSubject: Automatic reply: Your order\nAuto-Submitted: auto-replied\nX-Autoreply: yes\n\nI am out of the office until Monday.\n`;
    const ignored = n.reports.counters.ignored;
    assert.match(await deliver(c.verp, ooo, c.verp), /^250 /);
    await until('the report to be read', async () => n.reports.counters.ignored > ignored);
    assert.deepEqual(await eventsFor(c, 'bounced'), []);
    assert.equal(await n.suppression.get('acme', c.recipient), undefined);
  });

  test('an ARF complaint to the complaint address, the original quoted without its Return-Path: attributed by X-Message-Ref', async () => {
    const c = await n.copy('quinn@example.org');
    const ref = c.verp.slice(c.verp.indexOf('+') + 1, c.verp.indexOf('@'));
    const arf = arfComplaint(`fbl@${BOUNCE_DOMAIN}`, ['From: shop@example.org', 'To: redacted@example.org', `Message-ID: ${c.messageId}`, `X-Message-Ref: ${ref}`, 'Subject: Your order']);
    assert.match(await deliver(`fbl@${BOUNCE_DOMAIN}`, arf, 'feedback@fbl.example.net'), /^250 /);
    await until('the complained event', async () => (await eventsFor(c, 'complained')).length === 1);
    assert.equal((await n.suppression.get('acme', c.recipient))?.reason, 'complaint');
    // The same report naming a changed token is attributed to nobody: unclassified, nothing suppressed.
    const d = await n.copy('rose@example.org');
    const bad = arf.replace(ref, d.verp.slice(d.verp.indexOf('+') + 1, d.verp.indexOf('@')).replace(/.$/, (x) => (x === 'a' ? 'b' : 'a')));
    const before = n.reports.counters.unclassified;
    await deliver(`fbl@${BOUNCE_DOMAIN}`, bad, 'feedback@fbl.example.net');
    await until('the report read', async () => n.reports.counters.unclassified > before);
    assert.equal(await n.suppression.get('acme', d.recipient), undefined);
  });

  test('a mailto unsubscribe (the List-Unsubscribe mailto) is honoured once', async () => {
    const c = await n.copy('uma@example.com', { list: 'news' });
    const token = c.unsubscribeUrl.slice(c.unsubscribeUrl.lastIndexOf('/') + 1);
    const mail = `From: uma@example.com\nTo: unsubscribe@${BOUNCE_DOMAIN}\nSubject: unsubscribe ${token}\n\n`;
    await deliver(`unsubscribe@${BOUNCE_DOMAIN}`, mail, 'uma@example.com');
    await deliver(`unsubscribe@${BOUNCE_DOMAIN}`, mail, 'uma@example.com');
    await until('the suppression', () => n.suppression.get('acme', c.recipient, 'list:news'));
    const evs = await until('the event', async () => {
      const e = (await n.feed()).filter((x) => x.type === 'unsubscribed' && x.recipient === c.recipient);
      return e.length ? e : undefined;
    });
    assert.equal(evs[0]!.via, 'mailto');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await n.feed()).filter((x) => x.type === 'unsubscribed' && x.recipient === c.recipient).length, 1, 'the second mail changes nothing');
  });

  test('an unreadable report to a VERP address: an unclassified event and the report kept, nothing suppressed', async () => {
    const c = await n.copy('ugo@example.com');
    const garbage = `To: ${c.verp}\nContent-Type: multipart/report; report-type=delivery-status; boundary="x"\n\n--x\nContent-Type: message/delivery-status\n\n\u0001\u0002 not a field\n`;
    await deliver(c.verp, garbage);
    const ev = await until('the unclassified event', async () => (await eventsFor(c, 'unclassified'))[0]);
    assert.ok(ev.report?.stored);
    assert.ok(fs.existsSync(path.join(n.dir, 'hosted', 'reports', ev.report!.stored!)), 'the report is kept for a person to read');
    assert.equal(await n.suppression.get('acme', c.recipient), undefined);
  });
});

describe('the fixture corpus through the intake', () => {
  test('every DSN, ARF report, auto-reply and malformed report does what its classification says', async () => {
    const files = Object.keys(expected).sort();
    assert.ok(files.length >= 55, `${files.length} fixtures`);
    for (const file of files) {
      const e = expected[file]!;
      const raw = fs.readFileSync(path.join(FIXTURES, file));
      const text = raw.toString('latin1');
      const c = await n.copy(e.recipient ?? `someone-${files.indexOf(file)}@example.com`);
      const body = text.replace(FIXTURE_VERP, c.verp);
      const to = e.kind === 'complaint' ? `fbl@${BOUNCE_DOMAIN}` : c.verp;
      if (e.kind === 'complaint' && !(text.match(FIXTURE_VERP) ?? []).length) continue; // nothing of ours to attribute it to
      const before = n.reports.counters;
      const seen = Object.values(before).reduce((a, b) => a + b, 0);
      const reply = await deliver(to, body);
      assert.match(reply, /^250 /, `${file}: ${reply}`);
      await until(`${file} read`, async () => Object.values(n.reports.counters).reduce((a, b) => a + b, 0) > seen);
      const events = (await n.feed()).filter((x) => x.queueId === c.queueId);
      const sup = await n.suppression.get('acme', c.recipient);
      const parsed = await readReport(Buffer.from(body, 'latin1'));
      const action = parsed.kind === 'bounce' ? parsed.recipients.find((r) => r.recipient?.toLowerCase() === c.recipient.toLowerCase())?.action ?? parsed.recipients[0]?.action : undefined;
      switch (e.kind) {
        case 'bounce': {
          if (action !== 'failed' || e.class === 'none') {
            assert.equal(events.filter((x) => x.type === 'bounced' && x.queueId === c.queueId).length, 0, `${file}: ${action} is not a failure`);
            break;
          }
          const b = events.find((x) => x.type === 'bounced');
          assert.ok(b, `${file}: a bounced event`);
          assert.equal(b.bounce?.class, e.class, file);
          assert.equal(b.bounce?.status, e.status, file);
          assert.equal(sup?.reason, e.class === 'hard' ? 'hard-bounce' : undefined, `${file}: suppressed only when hard`);
          break;
        }
        case 'complaint':
          assert.ok(events.some((x) => x.type === 'complained'), `${file}: complained`);
          assert.equal(sup?.reason, 'complaint', file);
          break;
        case 'auto-reply':
          assert.equal(events.filter((x) => x.queueId === c.queueId).length, 0, `${file}: ignored`);
          assert.equal(sup, undefined, file);
          break;
        case 'unclassified':
          assert.equal(sup, undefined, file);
          assert.ok(events.some((x) => x.type === 'unclassified' && x.report?.stored), `${file}: unclassified, kept, attributed to the copy its VERP address names`);
          break;
      }
    }
  });
});

describe('under load', () => {
  test('1,000 DSNs over 20 sessions: every one attributed and recorded', { timeout: 120_000 }, async () => {
    const N = 1000;
    const SESSIONS = 20;
    const copies: TestCopy[] = [];
    for (let i = 0; i < N; i++) copies.push(await n.copy(`load-${i}@example.com`));
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: SESSIONS }, async (_, s) => {
        const c: RawSmtp = await open(n.smtpPort);
        for (let i = s; i < N; i += SESSIONS) {
          const k = copies[i]!;
          const r = await send(c, '', [k.verp], dsn(k.verp, k.recipient, '5.1.1', '550 5.1.1 User unknown'));
          assert.match(r, /^250 /);
          await c.cmd('RSET');
        }
        c.socket.destroy();
      }),
    );
    const accepted = Date.now() - t0;
    const all = await until(
      'every report recorded',
      async () => {
        const ev = (await n.feed()).filter((e) => e.type === 'bounced' && e.recipient?.startsWith('load-'));
        return ev.length >= N && ev;
      },
      60_000,
    );
    const done = Date.now() - t0;
    assert.equal(new Set(all.map((e) => e.queueId)).size, N, 'each copy once');
    for (const k of [copies[0]!, copies[N - 1]!]) assert.equal((await n.suppression.get('acme', k.recipient))?.reason, 'hard-bounce');
    console.log(`# bounce intake: ${N} DSNs over ${SESSIONS} sessions accepted in ${accepted} ms (${Math.round((N / accepted) * 1000)}/s), all recorded in ${done} ms (${Math.round((N / done) * 1000)}/s)`);
  });
});

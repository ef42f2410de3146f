import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readReport, type FeedbackReport } from '../../../engine/feedback/report.js';

const DIR = path.join(import.meta.dirname, '../../fixtures/feedback');

interface Expected {
  kind: FeedbackReport['kind'];
  class?: string;
  status?: string;
  recipient?: string;
  recipients?: number;
  messageId?: string;
  returnPath?: string;
  feedbackType?: string;
}

const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Record<string, Expected>;
const files = readdirSync(DIR).filter((f) => f.endsWith('.eml')).sort();

/** The fields expected.json names, read from a report. */
function summary(r: FeedbackReport, want: Expected): Record<string, unknown> {
  const got: Record<string, unknown> = { kind: r.kind };
  if (r.kind === 'bounce') {
    const first = r.recipients[0];
    Object.assign(got, { class: first?.class, status: first?.status, recipient: first?.recipient, recipients: r.recipients.length, messageId: r.refs.messageId, returnPath: r.refs.returnPath });
  } else if (r.kind === 'complaint') {
    Object.assign(got, { feedbackType: r.feedbackType, recipient: r.refs.recipient, messageId: r.refs.messageId, returnPath: r.refs.returnPath });
  }
  return Object.fromEntries(Object.keys(want).map((k) => [k, got[k]]));
}

test('every fixture has an expected classification, and every expectation a fixture', () => {
  assert.deepEqual(Object.keys(expected).sort(), files);
});

for (const file of files) {
  test(`fixture ${file}`, async () => {
    const want = expected[file];
    assert.ok(want, `${file} is missing from expected.json`);
    const r = await readReport(readFileSync(path.join(DIR, file)));
    assert.deepEqual(summary(r, want), want, JSON.stringify(r, null, 1));
  });
}

// ---- order of the classifiers -------------------------------------------------------------

test('the classifiers run in the documented order', async () => {
  const { CLASSIFIERS } = await import('../../../engine/feedback/report.js');
  assert.deepEqual(CLASSIFIERS.map((c) => c.name), ['arfComplaint', 'rfc3464Dsn', 'autoReply', 'plainTextBounce', 'unclassified']);
});

test('a DSN that carries Auto-Submitted: auto-replied is still read as a DSN', async () => {
  const raw = readFileSync(path.join(DIR, 'dsn-gmail-nosuchuser.eml'));
  assert.match(raw.toString(), /^Auto-Submitted: auto-replied\r$/m);
  const r = await readReport(raw);
  assert.equal(r.kind, 'bounce');
  assert.equal(r.kind === 'bounce' && r.format, 'rfc3464');
});

test("an Exim plain-text bounce (Auto-Submitted: auto-replied, from Mailer-Daemon) is a bounce, not an auto-reply", async () => {
  const raw = readFileSync(path.join(DIR, 'plain-exim-old-user-unknown.eml'));
  assert.match(raw.toString(), /^Auto-Submitted: auto-replied\r$/m);
  assert.equal((await readReport(raw)).kind, 'bounce');
});

test('an out-of-office whose text says "mailbox is full" and "user unknown" is an auto-reply', async () => {
  const r = await readReport(readFileSync(path.join(DIR, 'auto-nl-afwezig-mailbox-full-text.eml')));
  assert.equal(r.kind, 'auto-reply');
});

test('X-Auto-Response-Suppress alone does not make an auto-reply', async () => {
  const raw = Buffer.from('From: a@example.com\r\nTo: b@example.org\r\nSubject: Hello\r\nX-Auto-Response-Suppress: All\r\n\r\nJust a note.\r\n');
  assert.equal((await readReport(raw)).kind, 'unclassified');
});

test('a challenge phrase inside the returned original does not turn a bounce into an auto-reply', async () => {
  const raw = Buffer.from(
    'From: MAILER-DAEMON@mx.example.net\r\nTo: bounces+x@bounce.postino.test\r\nSubject: failure notice\r\n\r\n' +
      'Hi. This is the qmail-send program at mx.example.net.\r\n\r\n<amy@example.net>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n' +
      '--- Below this line is a copy of the message.\r\n\r\nSubject: Welcome\r\n\r\nPlease confirm you are human: verify your email to be delivered.\r\n',
  );
  const r = await readReport(raw);
  assert.equal(r.kind, 'bounce');
});

test('an ARF report gives feedback type, user agent, source IP and arrival date', async () => {
  const r = await readReport(readFileSync(path.join(DIR, 'arf-outlook-jmrp-abuse.eml')));
  assert.ok(r.kind === 'complaint');
  assert.equal(r.userAgent, 'Hotmail FBL');
  assert.equal(r.sourceIp, '198.51.100.20');
  assert.equal(r.arrivalDate, 'Wed, 25 Nov 2026 10:00:02 -0800');
  assert.equal(r.refs.postinoHeaders['x-postino-tag'], 'order-1042');
});

test('an ARF report with only text/rfc822-headers still names our Message-ID and X-Postino headers', async () => {
  const r = await readReport(readFileSync(path.join(DIR, 'arf-comcast-headers-only.eml')));
  assert.ok(r.kind === 'complaint');
  assert.equal(r.refs.postinoHeaders['x-postino-queue-id'], '00ABCDEF12345643');
});

test('a delivered/relayed DSN has class none; a delayed recipient is soft', async () => {
  const ok = await readReport(readFileSync(path.join(DIR, 'dsn-postfix-delivered-notify-success.eml')));
  assert.ok(ok.kind === 'bounce');
  assert.deepEqual(ok.recipients.map((r) => [r.action, r.class]), [['relayed', 'none']]);
  const two = await readReport(readFileSync(path.join(DIR, 'dsn-postfix-two-recipients.eml')));
  assert.ok(two.kind === 'bounce');
  assert.deepEqual(two.recipients.map((r) => [r.recipient, r.action, r.class]), [['nick@example.com', 'failed', 'hard'], ['olga@example.com', 'delayed', 'soft']]);
});

// ---- bounds: hostile inputs return quickly and never throw ---------------------------------

const TIME_LIMIT_MS = 2000;

function nestedMultiparts(depth: number): Buffer {
  const parts = ['From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'];
  for (let i = 1; i < depth; i++) parts.push(`--b${i - 1}\r\nContent-Type: multipart/mixed; boundary="b${i}"\r\n\r\n`);
  return Buffer.from(parts.join(''));
}

const hostile: Array<[string, () => Buffer]> = [
  ['20k nested multiparts', () => nestedMultiparts(20_000)],
  ['250 nested multiparts then 2 MB of delimiter-like lines', () => Buffer.concat([nestedMultiparts(250), Buffer.from('--b3\r\n'.repeat(350_000))])],
  ['2 MB of boundary lines', () => Buffer.from('Content-Type: multipart/report; report-type=delivery-status; boundary="x"\r\n\r\n' + '--x\r\n'.repeat(400_000))],
  ['5 MB of {{', () => Buffer.from('Subject: x\r\n\r\n' + '{{'.repeat(2_600_000))],
  ['5 MB of {{ without a header', () => Buffer.from('{{'.repeat(2_600_000))],
  ['5 MB+ junk body under a bounce header', () => Buffer.concat([Buffer.from('From: MAILER-DAEMON@x.example\r\nSubject: Returned mail\r\n\r\n'), Buffer.alloc(5_500_000, 'junk <a@b.c>: 550 ')])],
  ['20k nested message/rfc822', () => Buffer.from('Content-Type: message/rfc822\r\n\r\n'.repeat(20_000))],
  ['a 3 MB header line', () => Buffer.from('Subject: ' + 'a'.repeat(3_000_000) + '\r\n\r\nbody')],
  ['5 MB of random bytes', () => Buffer.from(Array.from({ length: 5_000_000 }, (_, i) => (i * 2654435761) >>> 24))],
  ['1 MB HTML nested 200k deep', () => Buffer.from('Content-Type: text/html\r\n\r\n' + '<div>'.repeat(200_000))],
  ['a delivery-status part of 100k recipient groups', () => Buffer.from('Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n' + 'Final-Recipient: rfc822; a@b.c\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n'.repeat(100_000) + '--b--\r\n')],
];

for (const [name, make] of hostile) {
  test(`bounded: ${name} returns within ${TIME_LIMIT_MS} ms`, async () => {
    const raw = make();
    const t = performance.now();
    const r = await readReport(raw);
    const ms = performance.now() - t;
    assert.ok(['bounce', 'complaint', 'auto-reply', 'unclassified'].includes(r.kind));
    assert.ok(ms < TIME_LIMIT_MS, `${name}: ${ms.toFixed(0)} ms (${r.kind})`);
  });
}

test('a DSN whose returned original is 6 MB is still read (only the start is parsed)', async () => {
  const dsn = readFileSync(path.join(DIR, 'dsn-postfix-user-unknown.eml')).toString();
  const at = dsn.lastIndexOf('\r\n--4Hx3Q96Z2Tz9sWb');
  const raw = Buffer.from(dsn.slice(0, at) + '\r\n' + 'All work and no play makes Jack a dull boy.\r\n'.repeat(140_000) + dsn.slice(at));
  assert.ok(raw.length > 6_000_000);
  const t = performance.now();
  const r = await readReport(raw);
  assert.ok(performance.now() - t < TIME_LIMIT_MS);
  assert.ok(r.kind === 'bounce');
  assert.equal(r.recipients[0]?.class, 'hard');
  assert.equal(r.refs.messageId, expected['dsn-postfix-user-unknown.eml']?.messageId);
});

// ---- parse rate -------------------------------------------------------------------------

test('parse rate over the corpus (printed)', async (t) => {
  const corpus = files.map((f) => readFileSync(path.join(DIR, f)));
  const rounds = Math.ceil(1000 / corpus.length);
  const start = performance.now();
  for (let i = 0; i < rounds; i++) for (const raw of corpus) await readReport(raw);
  const seconds = (performance.now() - start) / 1000;
  const rate = (rounds * corpus.length) / seconds;
  t.diagnostic(`feedback parse rate: ${rate.toFixed(0)} reports/s (${rounds * corpus.length} parses of ${corpus.length} fixtures in ${seconds.toFixed(2)} s)`);
  assert.ok(rate > 50);
});

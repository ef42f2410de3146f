/*
 * Control headers validated at the listener (common/control-headers.ts), on
 * the wire: each bad value of X-Postino-* and the shims (X-SMTPAPI, X-SES-*,
 * X-PM-*, X-Mailgun-*) gets `550 5.6.0` with its reason at the end of DATA and
 * nothing is queued; good values pass. The same session keeps working.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestListener, type TestListener } from '../helpers/listener.js';
import { open, send } from '../helpers/smtp-session.js';

/** Fixed "now" of the listener: 2026-11-01T00:00:00Z. */
const NOW = Date.UTC(2026, 10, 1);
const DAY = 86_400_000;

let l: TestListener;
before(async () => (l = await startTestListener({}, { now: () => NOW })));
after(() => l.close());

function withHeader(header: string): string {
  return `From: shop@example.org\r\nTo: ada@example.com\r\nSubject: controls\r\n${header}\r\n\r\nHello.`;
}

/** `n` characters of `ch` folded every 500 (RFC 5322 2.2.3): a long value over lines under 998 octets. */
const long = (ch: string, n: number): string => (ch.repeat(n).match(/.{1,500}/g) ?? []).join('\r\n ');

const BAD: Array<[string, RegExp]> = [
  ['X-SMTPAPI: {"send_at": 9e12}', /X-SMTPAPI: send_at is more than 30 days ahead/],
  [`X-SMTPAPI: {"send_at": ${Math.floor((NOW + 31 * DAY) / 1000)}}`, /send_at is more than 30 days ahead \(engine\.maxScheduleDays\)/],
  ['X-SMTPAPI: {"send_at": 1000}', /send_at is before 2000-01-01/],
  ['X-SMTPAPI: {"send_at": "tomorrow"}', /send_at is not a Unix time in seconds/],
  ['X-SMTPAPI: {"category": ', /X-SMTPAPI: is not valid JSON/],
  ['X-SMTPAPI: [1,2]', /X-SMTPAPI: is not a JSON object/],
  ['X-SMTPAPI: {"unique_args": {"a": {"b": 1}}}', /unique_args is not a flat object of strings and numbers/],
  ['X-SMTPAPI: {"category": [1]}', /category is not a string or a list of strings/],
  ['X-SMTPAPI: {"sub": {"-name-": "Ada"}}', /sub is not an object of lists/],
  [`X-Postino-Send-At: ${new Date(NOW + 40 * DAY).toISOString()}`, /X-Postino-Send-At: is more than 30 days ahead/],
  ['X-Postino-Send-At: 1999-12-31T23:59:59Z', /X-Postino-Send-At: is before 2000-01-01/],
  ['X-Postino-Send-At: next tuesday-ish', /X-Postino-Send-At: cannot parse "next tuesday-ish"/],
  ['X-Mailgun-Deliver-By: Fri, 01 Jan 2100 00:00:00 +0000', /X-Mailgun-Deliver-By: is more than 30 days ahead/],
  ['X-Postino-Vars: {"first": ["Ada"]}', /X-Postino-Vars: is not a flat object of strings and numbers/],
  ['X-Postino-Vars: {"first": null}', /X-Postino-Vars: is not a flat object/],
  ['X-Postino-Vars: "Ada"', /X-Postino-Vars: is not a JSON object/],
  ['X-Mailgun-Variables: {"a": {"b": "c"}}', /X-Mailgun-Variables: is not a flat object/],
  [`X-SMTPAPI: {"unique_args": {"order": "${long('a', 1001)}"}}`, /unique_args has a value longer than 1000 characters/],
  [`X-Postino-Vars: {"first": "${long('a', 70_000)}"}`, /is longer than 65536 characters/],
  [`X-Postino-Tag: ${long('t', 1001)}`, /X-Postino-Tag: is longer than 1000 characters/],
  [`X-PM-Metadata-order: ${long('x', 1001)}`, /X-PM-Metadata-order: is longer than 1000 characters/],
  [`X-Postino-List: ${'n'.repeat(101)}`, /X-Postino-List: is longer than 100 characters/],
  ['X-Postino-Stream: marketing', /X-Postino-Stream: unknown stream "marketing"/],
  ['X-Postino-Track: everything', /X-Postino-Track: "everything" is not opens, clicks or none/],
  ['X-Postino-Footer: maybe', /X-Postino-Footer: "maybe" is not on or off/],
  ['X-Postino-Metadata: order-1234', /X-Postino-Metadata: "order-1234" is not key=value/],
  ['X-SES-MESSAGE-TAGS: a=1, b', /X-SES-MESSAGE-TAGS: "b" is not key=value/],
];

test('each out-of-range or malformed control header value gets 550 5.6.0 with its reason, and nothing is queued', async () => {
  const c = await open(l.port, { tls: l.ca });
  try {
    for (const [header, reason] of BAD) {
      const reply = await send(c, 'shop@example.org', ['ada@example.com'], withHeader(header));
      assert.match(reply, /^550 5\.6\.0 /, header.slice(0, 60));
      assert.match(reply, reason, header.slice(0, 60));
    }
  } finally {
    c.close();
  }
  assert.equal((await l.messages()).length, 0);
});

test('well-formed control headers in range are accepted', async () => {
  const c = await open(l.port, { tls: l.ca });
  const good = [
    `X-SMTPAPI: {"send_at": ${Math.floor((NOW + 29 * DAY) / 1000)}, "category": ["a", "b"], "unique_args": {"order": 12}, "sub": {"-n-": ["Ada", 2]}}`,
    `X-Postino-Send-At: ${new Date(NOW + DAY).toISOString()}`,
    'X-Postino-Send-At: Tue, 24 Nov 2020 10:00:00 +0000',
    'X-Postino-Vars: {"first": "Ada", "n": 3}',
    'X-Postino-Stream: Bulk',
    'X-Postino-Track: opens, clicks',
    'X-Postino-Footer: off',
    'X-Postino-Metadata: customer=c-77; order=1234',
    'X-PM-Message-Stream: broadcast',
  ];
  try {
    for (const h of good) assert.match(await send(c, 'shop@example.org', ['ada@example.com'], withHeader(h)), /^250 /, h);
  } finally {
    c.close();
  }
  assert.equal((await l.messages()).length, good.length);
});

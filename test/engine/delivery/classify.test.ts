/*
 * classify.ts: what a relay's answer means for one copy (delivered, deferred,
 * bounced hard, soft or block) and which back-pressure rule a 4xx matches. Pure
 * functions: no servers. outcomes.test.ts covers the same decisions end to end.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../common/config.js';
import { parseReply, SendFailure, type SendOutcome } from '../../../common/smtp-client.js';
import { BackPressureRules, bounceClass, classifyFailure, classifySent } from '../../../engine/delivery/classify.js';

const RELAY = 'smtp://127.0.0.1:2600';
const reply = parseReply;

function sent(rejected: string[] = []): SendOutcome {
  return {
    relay: RELAY,
    dsn: false,
    accepted: rejected.length ? [] : ['a@example.org'],
    rejected: rejected.map((r) => ({ ...reply(r), recipient: 'a@example.org' })),
    reply: reply('250 2.0.0 Ok: queued as 4ABC'),
  };
}

const defaultRules = (): BackPressureRules => new BackPressureRules(parseConfig({}).delivery.backPressure);

test('bounce class: X.1.x addressing errors are hard', () => {
  for (const e of ['5.1.1', '5.1.2', '5.1.10']) assert.equal(bounceClass(reply(`550 ${e} No such user`)), 'hard', e);
});

test('bounce class: X.2.1 (disabled) is hard; the generic X.2.0 is hard only when its text says the mailbox is gone', () => {
  assert.equal(bounceClass(reply('550 5.2.0 Mailbox unavailable')), 'hard');
  assert.equal(bounceClass(reply('550 5.2.1 Mailbox disabled')), 'hard');
  assert.equal(bounceClass(reply('550 5.2.0 Requested action not taken')), 'soft');
});

test('bounce class: mailbox full (5.2.2), message too long (5.2.3) and a bare 5xx are soft', () => {
  for (const r of ['552 5.2.2 Mailbox full', '552 5.2.3 Message too long', '550 Rejected', '550 5.2.10 x']) assert.equal(bounceClass(reply(r)), 'soft', r);
});

test('bounce class: policy and reputation refusals (5.7.x, blocklists) are block: the sender’s problem', () => {
  for (const r of ['554 5.7.1 Spam', '550 5.7.26 Unauthenticated email is not accepted (DMARC)', '550 5.0.0 Blocked using zen.spamhaus.org']) assert.equal(bounceClass(reply(r)), 'block', r);
});

test('a transaction with no rejected recipient is delivered, with the relay and its reply', () => {
  assert.deepEqual(classifySent(sent()), { kind: 'delivered', relay: RELAY, reply: reply('250 2.0.0 Ok: queued as 4ABC') });
});

test('a RCPT 550 5.1.1 in an otherwise sent transaction is a hard bounce carrying that reply, without the recipient field', () => {
  assert.deepEqual(classifySent(sent(['550 5.1.1 <a@example.org>: user unknown'])), {
    kind: 'bounced',
    relay: RELAY,
    reply: { code: 550, enhanced: '5.1.1', response: '550 5.1.1 <a@example.org>: user unknown' },
    bounceClass: 'hard',
  });
});

test('a RCPT 452 4.2.2 is deferred with the reply text as its reason', () => {
  const o = classifySent(sent(['452 4.2.2 Mailbox full, try later']));
  assert.equal(o.kind, 'deferred');
  assert.equal(o.kind === 'deferred' && o.reason, '452 4.2.2 Mailbox full, try later');
  assert.equal(o.reply?.enhanced, '4.2.2');
});

test('a failure with no reply (relay unreachable) is held: the relay is down, the copy is charged nothing', () => {
  assert.deepEqual(classifyFailure(new SendFailure('connect ECONNREFUSED 127.0.0.1:2600', undefined, undefined)), { kind: 'held', reason: 'connect ECONNREFUSED 127.0.0.1:2600' });
});

test('a transaction-level 421 4.7.0 is deferred', () => {
  assert.equal(classifyFailure(new SendFailure('x', reply('421 4.7.0 Try again later'), RELAY)).kind, 'deferred');
});

test('a transaction-level 554 5.7.1 is a block bounce', () => {
  const o = classifyFailure(new SendFailure('x', reply('554 5.7.1 Message refused'), RELAY));
  assert.deepEqual(o, { kind: 'bounced', relay: RELAY, reply: reply('554 5.7.1 Message refused'), bounceClass: 'block' });
});

test('a failure with a rejected recipient is classified by the RCPT reply, not the transaction reply', () => {
  const rcpt = { ...reply('550 5.1.1 unknown user'), recipient: 'a@example.org' };
  const o = classifyFailure(new SendFailure('all recipients rejected', reply('554 5.5.1 No valid recipients'), RELAY, [rcpt]));
  assert.equal(o.kind === 'bounced' && o.reply.enhanced, '5.1.1');
  assert.equal(o.kind === 'bounced' && o.bounceClass, 'hard');
});

test('a 4xx with no text is deferred with "reply <code>" as its reason', () => {
  const o = classifyFailure(new SendFailure('x', { code: 451, enhanced: '4.0.0', response: '' }, RELAY));
  assert.equal(o.kind === 'deferred' && o.reason, 'reply 451');
});

test('back-pressure (defaults): "421 4.7.0 [TS01] ... try again later" matches provider-try-later, which suspends', () => {
  const rule = defaultRules().match(reply('421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred; try again later'));
  assert.equal(rule?.name, 'provider-try-later');
  assert.equal(rule?.action, 'suspend');
  assert.equal(rule?.seconds, 300);
});

test('back-pressure (defaults): "Too Many Connections" matches too-many case-insensitively, which slows to 1 msg/s', () => {
  const rule = defaultRules().match(reply('451 4.7.1 Too Many Connections from your IP'));
  assert.equal(rule?.name, 'too-many');
  assert.equal(rule?.action, 'slow');
  assert.equal(rule?.messagesPerSecond, 1);
});

test('back-pressure: a 5xx or 2xx never matches a rule, whatever its text', () => {
  const rules = defaultRules();
  assert.equal(rules.match(reply('554 5.7.1 too many messages, try again later')), undefined);
  assert.equal(rules.match(reply('250 2.0.0 too many messages')), undefined);
  assert.equal(rules.match(undefined), undefined);
});

test('back-pressure: a 4xx matching no rule gives no rule', () => {
  assert.equal(defaultRules().match(reply('451 4.3.0 Temporary local problem')), undefined);
});

test('back-pressure: when two rules match, the first in config order wins', () => {
  const { backPressure } = parseConfig({
    delivery: {
      backPressure: [
        { name: 'first', match: 'rate', action: 'slow', seconds: 60, messagesPerSecond: 5 },
        { name: 'second', match: 'rate limited', action: 'suspend', seconds: 60 },
      ],
    },
  }).delivery;
  assert.equal(new BackPressureRules(backPressure).match(reply('450 4.7.0 rate limited'))?.name, 'first');
});

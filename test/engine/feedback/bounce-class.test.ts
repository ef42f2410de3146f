import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyStatus, findEnhancedStatus, findReplyCode, inferStatus, resolveFailure } from '../../../engine/feedback/bounce-class.js';

test('X.1.x address errors and X.2.1 are hard', () => {
  for (const s of ['5.1.1', '5.1.2', '5.1.10', '5.1.6', '5.1.3', '5.2.1']) assert.equal(classifyStatus(s, ''), 'hard', s);
});

test('X.1.7 / X.1.8 name our sender, not the recipient: block', () => {
  assert.equal(classifyStatus('5.1.8', "550 5.1.8 Sender address rejected: Domain not found"), 'block');
  assert.equal(classifyStatus('5.1.7', ''), 'block');
});

test('every 4.x.x is soft, whatever the text says', () => {
  for (const s of ['4.2.2', '4.4.1', '4.7.0', '4.7.28', '4.1.1']) assert.equal(classifyStatus(s, '421 rate limited: too many messages, spam'), 'soft', s);
});

test('full, too large, system, routing, protocol codes are soft', () => {
  for (const s of ['5.2.2', '5.2.3', '5.3.4', '5.3.0', '5.4.4', '5.4.7', '5.5.3', '5.6.0']) assert.equal(classifyStatus(s, ''), 'soft', s);
});

test('X.7.x is block (spam, DMARC, SPF, DKIM, RBL)', () => {
  for (const s of ['5.7.1', '5.7.26', '5.7.23', '5.7.9', '5.7.0', '5.7.708']) assert.equal(classifyStatus(s, ''), 'block', s);
});

test('a generic code is decided by its text', () => {
  assert.equal(classifyStatus('5.0.0', '550 Message rejected as spam'), 'block');
  assert.equal(classifyStatus('5.5.0', 'blocked using zen.spamhaus.org'), 'block');
  assert.equal(classifyStatus(undefined, 'Your IP is blacklisted', 550), 'block');
  assert.equal(classifyStatus(undefined, 'rejected due to policy reasons', 550), 'block');
  assert.equal(classifyStatus('5.0.0', 'DMARC policy reject'), 'block');
  assert.equal(classifyStatus('5.0.0', '550 User unknown'), 'hard');
  assert.equal(classifyStatus('5.0.0', 'mailbox unavailable'), 'hard');
  assert.equal(classifyStatus('5.0.0', 'something else entirely'), 'soft');
  assert.equal(classifyStatus('5.2.0', 'mailbox has been disabled'), 'hard');
  assert.equal(classifyStatus('5.2.0', 'message could not be stored'), 'soft');
});

test('a generic status takes the specific code its diagnostic names', () => {
  assert.equal(classifyStatus('5.0.0', '550 5.1.1 <a@example.com>... User unknown'), 'hard');
  assert.equal(classifyStatus('5.0.0', '554 5.7.1 Message rejected'), 'block');
});

test('rate limits under a non-policy 5xx are block; a 5.4.x timeout is soft', () => {
  assert.equal(classifyStatus('5.4.5', 'rate limit exceeded for this sender'), 'block');
  assert.equal(classifyStatus('5.5.0', 'too many connections from your IP'), 'block');
  assert.equal(classifyStatus('5.4.7', 'delivery time expired'), 'soft');
  assert.equal(classifyStatus('5.4.6', 'routing loop detected: too many hops'), 'soft');
});

test('no status: the reply code, else soft', () => {
  assert.equal(classifyStatus(undefined, '', 450), 'soft');
  assert.equal(classifyStatus(undefined, '', 550), 'soft');
  assert.equal(classifyStatus(undefined, ''), 'soft');
});

test('phrases infer a status, in the corpus languages', () => {
  const cases: Array<[string, string, string]> = [
    ['Sorry, no mailbox here by that name.', '5.1.1', 'hard'],
    ["This user doesn't have a yahoo.com account", '5.1.1', 'hard'],
    ['invalid recipient', '5.1.1', 'hard'],
    ['The account has been disabled', '5.2.1', 'hard'],
    ['Host or domain name not found', '5.1.2', 'hard'],
    ['Mailbox full', '5.2.2', 'soft'],
    ['Quota exceeded', '5.2.2', 'soft'],
    ['user is over quota', '5.2.2', 'soft'],
    ['Benutzer unbekannt', '5.1.1', 'hard'],
    ['Postfach voll', '5.2.2', 'soft'],
    ['utilisateur inconnu', '5.1.1', 'hard'],
    ['boîte aux lettres pleine', '5.2.2', 'soft'],
    ['usuario desconocido', '5.1.1', 'hard'],
    ['buzón lleno', '5.2.2', 'soft'],
    ['utente sconosciuto', '5.1.1', 'hard'],
    ['casella piena', '5.2.2', 'soft'],
    ['usuário desconhecido', '5.1.1', 'hard'],
    ['caixa postal cheia', '5.2.2', 'soft'],
    ['gebruiker onbekend', '5.1.1', 'hard'],
    ['mailbox vol', '5.2.2', 'soft'],
    ['пользователь не найден', '5.1.1', 'hard'],
    ['почтовый ящик переполнен', '5.2.2', 'soft'],
    ['550 mailbox unavailable: listed at Spamhaus', '5.7.1', 'block'],
  ];
  for (const [text, status, cls] of cases) assert.deepEqual(inferStatus(text), { status, class: cls }, text);
  assert.equal(inferStatus('we will be in touch'), undefined);
  assert.equal(inferStatus('Die Nachricht verbleibt im Ausgang'), undefined, "'rbl' inside a German word is no RBL");
});

test('resolveFailure fills the inferred status and keeps the class digit', () => {
  assert.deepEqual(resolveFailure(undefined, '550 user unknown'), { status: '5.1.1', class: 'hard' });
  assert.deepEqual(resolveFailure('4.0.0', 'mailbox full'), { status: '4.2.2', class: 'soft' });
  assert.deepEqual(resolveFailure('5.0.0', '550-5.1.1 The email account does not exist'), { status: '5.1.1', class: 'hard' });
  assert.deepEqual(resolveFailure(undefined, '554 delivery error: dd Sorry'), { status: '5.0.0', class: 'soft' });
  assert.deepEqual(resolveFailure('5.7.1', 'anything'), { status: '5.7.1', class: 'block' });
});

test('enhanced codes are not read out of IP addresses or versions', () => {
  assert.equal(findEnhancedStatus('host 10.4.5.6 said: 550 no'), undefined);
  assert.equal(findEnhancedStatus('Exim 4.94.2.1 here'), undefined);
  assert.equal(findEnhancedStatus('Sorry (#5.1.1).'), '5.1.1');
  assert.equal(findEnhancedStatus('550-5.1.10 RESOLVER'), '5.1.10');
});

test('codes are not read out of addresses, tokens or parameters quoted before the reply', () => {
  // Exim quotes the MAIL FROM it sent, our VERP address: a queue id (hex) can end in digits that look like a reply code.
  for (const tail of ['451', '250', '421', '550']) {
    const text = `SMTP error from remote mail server after MAIL FROM:<bounces+00abcdef12345${tail}-abcdefghijklmrpz@bounce.postino.test> SIZE=241:\n    550 Too many messages from 198.51.100.20, rate limit exceeded. Try again later.`;
    assert.equal(findReplyCode(text), 550, tail);
    assert.equal(classifyStatus(undefined, text), 'block', tail);
  }
  assert.equal(findReplyCode('RCPT TO:<user-452@example.com>: 550 5.1.1 unknown'), 550);
  assert.equal(findReplyCode('host mx.example.com/250-relay said: 554 rejected'), 554);
  assert.equal(findReplyCode('SIZE=421: 550 too big'), 550);
  assert.equal(findEnhancedStatus('<bounces+ab4.2.1-x@bounce.example> said: 550 5.7.1 spam'), '5.7.1');
  assert.equal(findEnhancedStatus('mx4.2.1.example.net: 550 5.1.1 unknown'), '5.1.1');
  // What the codes are written as stays found.
  for (const [t, c] of [['550 no', 550], ['550-5.1.1 x', 550], ['554: rejected', 554], ['said: 452 4.2.2 full', 452], ['smtp;550 5.1.1', 550]] as const) assert.equal(findReplyCode(t), c, t);
});

test('a huge text is read only up to the diagnostic bound, quickly', () => {
  const text = 'x'.repeat(5_000_000) + ' user unknown';
  const t = performance.now();
  assert.equal(classifyStatus(undefined, text), 'soft');
  assert.ok(performance.now() - t < 500);
});

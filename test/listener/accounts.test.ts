/*
 * accounts.ts: which account a listener session belongs to (networks, AUTH),
 * what it must do first (STARTTLS, AUTH) and which sender domains it may use.
 * No server: sessions are the fields smtp-server fills in. listener.test.ts
 * and swaks.test.ts cover the replies on the wire.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { SMTPServerSession } from 'smtp-server';
import { parseConfig } from '../../common/config.js';
import { PostinoError, type ErrorCode } from '../../common/errors.js';
import { hashPassword } from '../../common/password-hash.js';
import { domainAllowed, domainOf } from '../../common/address.js';
import { AccountTable } from '../../listener/accounts.js';

/** Cheap scrypt parameters: these tests check who is accepted, not the cost of guessing. */
const FAST = { N: 1024, r: 8, p: 1 };

function session(remoteAddress: string, secure = true): SMTPServerSession {
  return { id: 'test', remoteAddress, secure, user: undefined } as unknown as SMTPServerSession;
}

function table(accounts: unknown[]): AccountTable {
  return new AccountTable(parseConfig({ accounts }).accounts);
}

function fails(code: ErrorCode) {
  return (e: unknown) => e instanceof PostinoError && e.code === code;
}

describe('allowlist (networks)', () => {
  const t = table([
    { id: 'v4', networks: ['10.1.0.0/16'] },
    { id: 'v6', networks: ['2001:db8::/32'] },
  ]);

  test('an IPv4 client inside a CIDR is admitted and belongs to that account', () => {
    assert.equal(t.admit('10.1.200.3'), undefined);
    assert.deepEqual(t.forAddress('10.1.200.3').map((a) => a.id), ['v4']);
  });

  test('an IPv4-mapped IPv6 client (::ffff:a.b.c.d) matches the IPv4 CIDR', () => {
    assert.deepEqual(t.forAddress('::ffff:10.1.0.9').map((a) => a.id), ['v4']);
  });

  test('an IPv6 client inside a CIDR belongs to that account', () => {
    assert.deepEqual(t.forAddress('2001:db8:5::1').map((a) => a.id), ['v6']);
  });

  test('an address in no account is refused with NOT_ALLOWED_NETWORK (554 5.7.1)', () => {
    const e = t.admit('10.2.0.1');
    assert.equal(e?.code, 'NOT_ALLOWED_NETWORK');
    assert.equal(e?.smtpCode, 554);
    assert.equal(e?.enhanced, '5.7.1');
  });

  test('a CIDR edge: the last address of 10.1.0.0/16 is in, the next one is out', () => {
    assert.equal(t.admit('10.1.255.255'), undefined);
    assert.ok(t.admit('10.2.0.0'));
  });
});

describe('the account of a session without AUTH', () => {
  test('behind a shared NAT, the first account in config order without users', () => {
    const t = table([
      { id: 'first', networks: ['127.0.0.0/8'] },
      { id: 'second', networks: ['127.0.0.1/32'] },
    ]);
    assert.equal(t.accountOf(session('127.0.0.1')).id, 'first');
  });

  test('an account with users is skipped: the open account sharing the address is used', async () => {
    const t = table([
      { id: 'authed', networks: ['127.0.0.1/32'], listener: { users: [{ username: 'app', passwordHash: await hashPassword('pw', FAST) }] } },
      { id: 'open', networks: ['127.0.0.1/32'] },
    ]);
    assert.equal(t.accountOf(session('127.0.0.1')).id, 'open');
  });

  test('only accounts with users match: AUTH_REQUIRED (530 5.7.0)', async () => {
    const t = table([{ id: 'authed', networks: ['127.0.0.1/32'], listener: { users: [{ username: 'app', passwordHash: await hashPassword('pw', FAST) }] } }]);
    assert.throws(() => t.accountOf(session('127.0.0.1')), (e: unknown) => fails('AUTH_REQUIRED')(e) && (e as PostinoError).smtpCode === 530);
  });

  test('before STARTTLS, when every matching account requires TLS: TLS_REQUIRED', () => {
    const t = table([{ id: 'a', networks: ['127.0.0.1/32'] }]);
    assert.throws(() => t.accountOf(session('127.0.0.1', false)), fails('TLS_REQUIRED'));
  });

  test('before STARTTLS, the matching account that allows plain text is the one chosen; after it, config order', () => {
    const t = table([
      { id: 'tls', networks: ['127.0.0.1/32'] },
      { id: 'plain', networks: ['127.0.0.1/32'], listener: { requireTls: false } },
    ]);
    assert.equal(t.accountOf(session('127.0.0.1', false)).id, 'plain', 'not the TLS-only account, which MAIL would refuse');
    assert.equal(t.accountOf(session('127.0.0.1', true)).id, 'tls');
  });
});

describe('AUTH', () => {
  let t: AccountTable;
  before(async () => {
    t = table([
      { id: 'open', networks: ['127.0.0.0/8'] },
      { id: 'shop', networks: ['127.0.0.1/32', '::1/128'], listener: { users: [{ username: 'shop-app', passwordHash: await hashPassword('right', FAST) }] } },
      { id: 'lab', networks: ['127.0.0.2/32'], listener: { allowInsecureAuth: true, requireTls: false, users: [{ username: 'lab-app', passwordHash: await hashPassword('lab', FAST) }] } },
    ]);
  });

  test('the right password authenticates the user\'s account', async () => {
    assert.equal((await t.authenticate('shop-app', 'right', session('::ffff:127.0.0.1'))).id, 'shop');
  });

  test('after AUTH the session sends for the authenticated account, not the first open one', async () => {
    const s = session('127.0.0.1');
    await t.authenticate('shop-app', 'right', s);
    s.user = 'shop-app';
    assert.equal(t.accountOf(s).id, 'shop');
  });

  test('a wrong password: AUTH_FAILED (535 5.7.8)', async () => {
    await assert.rejects(t.authenticate('shop-app', 'wrong', session('127.0.0.1')), (e: unknown) => fails('AUTH_FAILED')(e) && (e as PostinoError).smtpCode === 535);
  });

  test('an unknown user: AUTH_FAILED, like a wrong password', async () => {
    await assert.rejects(t.authenticate('nobody', 'right', session('127.0.0.1')), fails('AUTH_FAILED'));
  });

  test('a user of an account whose networks do not hold the client address: AUTH_FAILED', async () => {
    await assert.rejects(t.authenticate('lab-app', 'lab', session('127.0.0.1')), fails('AUTH_FAILED'));
  });

  test('AUTH before STARTTLS for an account that does not allow it: AUTH_NEEDS_TLS (538)', async () => {
    await assert.rejects(t.authenticate('shop-app', 'right', session('127.0.0.1', false)), (e: unknown) => fails('AUTH_NEEDS_TLS')(e) && (e as PostinoError).smtpCode === 538);
  });

  test('AUTH before STARTTLS is offered only inside the networks of an account that allows it', () => {
    assert.equal(t.insecureAuthFrom('127.0.0.2'), true);
    assert.equal(t.insecureAuthFrom('127.0.0.1'), false, 'the shop account is TLS-only, whatever the lab allows');
    assert.equal(t.insecureAuthFrom('127.0.0.9'), false, 'an open account has no users to log in');
  });

  test('AUTH before STARTTLS for an account with allowInsecureAuth succeeds', async () => {
    assert.equal((await t.authenticate('lab-app', 'lab', session('127.0.0.2', false))).id, 'lab');
  });

  test('a failed AUTH records nothing: the session stays with the open account', async () => {
    const s = session('127.0.0.1');
    await t.authenticate('shop-app', 'wrong', s).catch(() => undefined);
    s.user = 'shop-app';
    assert.equal(t.accountOf(s).id, 'open');
  });
});

describe('sender domains', () => {
  test('domainOf takes the part after the last @, lower-cased', () => {
    assert.equal(domainOf('"a@b"@Shop.Example.ORG'), 'shop.example.org');
    assert.equal(domainOf('no-at-sign'), '');
  });

  test('an exact pattern matches that domain only, in any case', () => {
    assert.equal(domainAllowed('Example.org', ['example.org']), true);
    assert.equal(domainAllowed('mail.example.org', ['example.org']), false);
  });

  test('*.example.org matches the domain itself and its subdomains, not a look-alike', () => {
    assert.equal(domainAllowed('example.org', ['*.example.org']), true);
    assert.equal(domainAllowed('a.b.example.org', ['*.example.org']), true);
    assert.equal(domainAllowed('badexample.org', ['*.example.org']), false);
  });

  test('an empty list allows any domain', () => {
    assert.equal(domainAllowed('anything.test', []), true);
  });
});

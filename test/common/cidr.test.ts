import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NetworkList, parseCidr } from '../../common/cidr.js';

test('CIDR lists match IPv4, IPv6 and IPv4-mapped IPv6 clients', () => {
  const n = new NetworkList(['127.0.0.1/32', '10.1.0.0/16', '::1/128', '2001:db8::/32']);
  assert.equal(n.contains('127.0.0.1'), true);
  assert.equal(n.contains('::ffff:127.0.0.1'), true);
  assert.equal(n.contains('127.0.0.2'), false);
  assert.equal(n.contains('10.1.200.3'), true);
  assert.equal(n.contains('10.2.0.1'), false);
  assert.equal(n.contains('::1'), true);
  assert.equal(n.contains('2001:db8:5::1'), true);
  assert.equal(n.contains('2001:db9::1'), false);
  assert.equal(n.contains(undefined), false);
  assert.equal(n.contains('not-an-ip'), false);
});

test('bad CIDRs are explained', () => {
  assert.match(parseCidr('10.0.0.0/33') as string, /prefix length outside 0\.\.32/);
  assert.match(parseCidr('::/129') as string, /outside 0\.\.128/);
  assert.match(parseCidr('example.com/8') as string, /not an IPv4 or IPv6/);
  assert.deepEqual(parseCidr('192.168.0.0/16'), { address: '192.168.0.0', prefix: 16, family: 'ipv4' });
});

test('remembered answers stay right: asked twice, and past the memo bound', () => {
  const n = new NetworkList(['10.0.0.0/8']);
  for (let round = 0; round < 2; round++) {
    assert.equal(n.contains('10.9.8.7'), true);
    assert.equal(n.contains('::ffff:10.9.8.7'), true);
    assert.equal(n.contains('11.0.0.1'), false);
    assert.equal(n.contains('not-an-ip'), false);
  }
  // More distinct clients than the memo holds: every answer is still the list's.
  for (let i = 0; i < 5000; i++) assert.equal(n.contains(`10.${(i >> 8) & 255}.${i & 255}.1`), true);
  for (let i = 0; i < 5000; i++) assert.equal(n.contains(`11.${(i >> 8) & 255}.${i & 255}.1`), false);
  assert.equal(n.contains('10.9.8.7'), true);
});

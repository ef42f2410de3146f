/*
 * overlay.ts, network-policy.ts and common/config-reload.ts: API changes kept
 * as differences over the config file (a file edit and an API change never
 * undo each other), the broad-network rule, and the key paths a reload names.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../../common/config.js';
import { accountPaths, changedPaths } from '../../../common/config-reload.js';
import { tooBroad } from '../../../engine/accounts/network-policy.js';
import { addToList, effectiveConfig, removeFromList, setQuotas, type AccountOverlay } from '../../../engine/accounts/overlay.js';

const fileWith = (networks: string[]) => parseConfig({ accounts: [{ id: 'shop', networks }] });

describe('overlays over the config file', () => {
  test('a network removed through the API stays removed when the file gains another; re-adding it undoes the removal', () => {
    const file = fileWith(['10.1.0.0/24', '10.2.0.0/24']);
    let o: AccountOverlay = removeFromList(file.accounts[0]!, {}, 'networks', '10.1.0.0/24');
    o = addToList(file.accounts[0]!, o, 'networks', '10.3.0.5/32');
    assert.deepEqual(o.networks, { add: ['10.3.0.5/32'], remove: ['10.1.0.0/24'] });
    const edited = fileWith(['10.1.0.0/24', '10.2.0.0/24', '10.4.0.0/24']);
    assert.deepEqual(effectiveConfig(edited, new Map([['shop', o]])).accounts[0]!.networks, ['10.2.0.0/24', '10.4.0.0/24', '10.3.0.5/32']);
    const undone = addToList(edited.accounts[0]!, o, 'networks', '10.1.0.0/24');
    assert.deepEqual(undone.networks, { add: ['10.3.0.5/32'], remove: [] }, 'in the file again: no delta needed');
    assert.deepEqual(removeFromList(edited.accounts[0]!, undone, 'networks', '10.3.0.5/32').networks, { add: [], remove: [] });
  });

  test('quotas replace the file values, only those given; overlays of accounts gone from the file are ignored', () => {
    const file = parseConfig({ accounts: [{ id: 'shop', listener: { messagesPerHour: 10, messagesPerDay: 100 } }] });
    const o = setQuotas(setQuotas({}, { messagesPerDay: 5 }), { quotaUnit: 'recipients' });
    const a = effectiveConfig(file, new Map([['shop', o], ['gone', { quotas: { messagesPerDay: 1 } }]])).accounts;
    assert.deepEqual(a.map((x) => [x.id, x.listener.messagesPerHour, x.listener.messagesPerDay, x.listener.quotaUnit]), [['shop', 10, 5, 'recipients']]);
  });
});

describe('networks too broad to add without force', () => {
  const min = { ipv4: 16, ipv6: 32 };
  const cases: Array<[string, RegExp | undefined]> = [
    ['0.0.0.0/0', /every IPv4 address/],
    ['::/0', /every IPv6 address/],
    ['10.0.0.0/8', /wider than \/16 \(listener\.minAccountPrefix\.ipv4\): 16777216 addresses/],
    ['2001:db8::/16', /wider than \/32/],
    ['10.1.0.0/16', undefined],
    ['203.0.113.7', undefined],
    ['2001:db8::/48', undefined],
  ];
  for (const [cidr, want] of cases) {
    test(`${cidr}: ${want ? 'refused' : 'fine'}`, () => {
      const why = tooBroad(cidr, min);
      if (want) assert.match(why ?? '', want);
      else assert.equal(why, undefined);
    });
  }
  test('the limit is a setting', () => assert.equal(tooBroad('10.0.0.0/8', { ipv4: 8, ipv6: 32 }), undefined));
});

describe('what a reload changed', () => {
  test('key paths of changed values; accounts by id, an added one whole', () => {
    const a = parseConfig({ listener: { port: 2587 }, accounts: [{ id: 'a' }, { id: 'b', networks: ['10.0.0.1/32'] }] });
    const b = parseConfig({ listener: { port: 2588 }, accounts: [{ id: 'b', networks: ['10.0.0.2/32'] }, { id: 'a' }, { id: 'c' }] });
    assert.deepEqual(changedPaths({ listener: a.listener }, { listener: b.listener }), ['listener.port']);
    assert.deepEqual(accountPaths(a.accounts, b.accounts), ['accounts[b].networks', 'accounts[c]']);
  });
});

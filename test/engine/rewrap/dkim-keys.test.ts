import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { dkimTxtValue } from '../../../engine/rewrap/dkim-keys.js';
import { CLI, tempDir } from '../../helpers/postino.js';

test('postino dkim keygen <domain> writes a 0600 key and prints the DNS TXT record and the config to use it', () => {
  const data = tempDir('dkim');
  const r = spawnSync(process.execPath, [CLI, 'dkim', 'keygen', 'Example.ORG', '--selector', 's1'], { env: { ...process.env, POSTINO_DATA: data }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const keyFile = path.join(data, 'secrets', 'dkim', 'example.org.s1.pem');
  assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
  const record = /^s1\._domainkey\.example\.org\. IN TXT \( (.+) \)$/m.exec(r.stdout);
  assert.ok(record, r.stdout);
  const strings = [...record[1]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
  assert.ok(strings.every((s) => s.length <= 255), 'each TXT string ≤ 255 octets');
  assert.equal(strings.join(''), dkimTxtValue(fs.readFileSync(keyFile, 'utf8')));
  assert.match(r.stdout, new RegExp(`accounts\\[\\]\\.engine\\.dkim = \\{"domain":"example\\.org","selector":"s1","keyFile":"${keyFile.replace(/[.\\/]/g, '\\$&')}"\\}`));
  const again = spawnSync(process.execPath, [CLI, 'dkim', 'keygen', 'example.org', '--selector', 's1'], { env: { ...process.env, POSTINO_DATA: data }, encoding: 'utf8' });
  assert.notEqual(again.status, 0, 'an existing key is never overwritten');
  const bad = spawnSync(process.execPath, [CLI, 'dkim', 'keygen', 'not a domain'], { env: { ...process.env, POSTINO_DATA: data }, encoding: 'utf8' });
  assert.equal(bad.status, 2);
});

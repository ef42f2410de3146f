/*
 * secrets.ts: a secret file appears whole or not at all, is never overwritten,
 * and one found too short (cut by a crash or a full disk, copied by hand) is
 * refused at start with an error naming the file.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ensureSecret, MIN_SECRET_BYTES, readSecret, secretsDir } from '../../common/secrets.js';
import { tempDir } from '../helpers/postino.js';

test('first start: a random secret, mode 0600, the same on every later start; no temporary file left', () => {
  const dataDir = tempDir('secrets');
  const a = ensureSecret(dataDir, 'admin-token');
  assert.ok(Buffer.byteLength(a) >= MIN_SECRET_BYTES);
  assert.equal(ensureSecret(dataDir, 'admin-token'), a);
  assert.equal(readSecret(dataDir, 'admin-token'), a);
  const file = path.join(secretsDir(dataDir), 'admin-token');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(fs.readdirSync(secretsDir(dataDir)), ['admin-token']);
});

test('a temporary file left by a crash during the first start is not a secret: the next start makes one', () => {
  const dataDir = tempDir('secrets-crash');
  fs.mkdirSync(secretsDir(dataDir), { recursive: true });
  fs.writeFileSync(path.join(secretsDir(dataDir), 'api-key.tmp-123-abcd'), '');
  assert.ok(Buffer.byteLength(ensureSecret(dataDir, 'api-key')) >= MIN_SECRET_BYTES);
});

for (const [what, content] of [
  ['empty', ''],
  ['short', 'abc123\n'],
] as const) {
  test(`an ${what} secret file is refused with an error naming it, at start and in the CLI`, () => {
    const dataDir = tempDir('secrets-short');
    fs.mkdirSync(secretsDir(dataDir), { recursive: true });
    const file = path.join(secretsDir(dataDir), 'admin-token');
    fs.writeFileSync(file, content, { mode: 0o600 });
    assert.throws(() => ensureSecret(dataDir, 'admin-token'), (e: unknown) => e instanceof Error && e.message.includes(file) && /at least 32/.test(e.message));
    assert.throws(() => readSecret(dataDir, 'admin-token'), /at least 32/);
    assert.equal(fs.readFileSync(file, 'utf8'), content, 'left as it was for the operator to look at');
  });
}

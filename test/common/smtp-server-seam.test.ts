/*
 * The seam with smtp-server: common/smtp-server.ts overrides (and calls)
 * private methods of one exact smtp-server release. These tests fail when
 * another release is installed, or when one of those methods is no longer on
 * the library's prototype, so an upgrade is a deliberate act: read the new
 * release's smtp-connection.js and smtp-server.js, adapt the overrides, then
 * move SMTP_SERVER_VERSION and package.json together.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { CONNECTION_CALLS, CONNECTION_OVERRIDES, PostinoSMTPServer, SERVER_CALLS, SERVER_OVERRIDES, SMTP_SERVER_VERSION, STREAM_CALLS, STREAM_OVERRIDES, TunedConnection } from '../../common/smtp-server.js';
import { ROOT } from '../helpers/postino.js';

const readJson = (file: string): Record<string, unknown> => JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;

/** Every method of the library common/smtp-server.ts depends on, named here on purpose (not read from the module under test). */
const CONNECTION_METHODS = { init: 'overridden', send: 'overridden', close: 'overridden', _onClose: 'overridden', handler_QUIT: 'overridden', handler_EHLO: 'overridden', handler_MAIL: 'overridden', handler_RCPT: 'overridden', _createParser: 'overridden', _whenWritable: 'overridden', upgrade: 'overridden', _parseAddressCommand: 'overridden', _onCommand: 'overridden', _setListeners: 'called', connectionReady: 'called', _isSupported: 'called', _getHandler: 'called' } as const;
const SERVER_METHODS = { connect: 'overridden', _expectsProxyHeader: 'overridden', _handleProxy: 'overridden', _onError: 'called', _onClientConnect: 'called' } as const;
/** SMTPStream's: replaced on each parser by common/smtp-data-feed.ts, and called from there. */
const STREAM_METHODS = { _feedDataStream: 'overridden', _countDataBytes: 'called', _endDataMode: 'called' } as const;

/** Methods a subclass defines itself that its base class also has: its overrides. */
function overridesOf(sub: { prototype: object }, base: { prototype: object }): string[] {
  const own = Object.getOwnPropertyNames(sub.prototype).filter((n) => n !== 'constructor');
  return own.filter((n) => n in base.prototype).sort();
}

const namesWith = (methods: Record<string, string>, kind: string): string[] =>
  Object.entries(methods)
    .filter(([, k]) => k === kind)
    .map(([n]) => n)
    .sort();

test(`the installed smtp-server is ${SMTP_SERVER_VERSION}, the release common/smtp-server.ts overrides`, () => {
  const installed = readJson(path.join(ROOT, 'node_modules', 'smtp-server', 'package.json')).version;
  assert.equal(installed, SMTP_SERVER_VERSION, `node_modules has smtp-server ${String(installed)}; common/smtp-server.ts overrides private methods of ${SMTP_SERVER_VERSION}`);
  const pinned = (readJson(path.join(ROOT, 'package.json')).dependencies as Record<string, string>)['smtp-server'];
  assert.equal(pinned, SMTP_SERVER_VERSION, 'package.json pins smtp-server exactly to SMTP_SERVER_VERSION');
});

for (const [name, kind] of Object.entries(CONNECTION_METHODS)) {
  test(`SMTPConnection.prototype.${name} (${kind} by TunedConnection) still exists`, () => {
    assert.equal(typeof (SMTPConnection.prototype as unknown as Record<string, unknown>)[name], 'function');
  });
}

for (const [name, kind] of Object.entries(SERVER_METHODS)) {
  test(`SMTPServer.prototype.${name} (${kind} by PostinoSMTPServer) still exists`, () => {
    assert.equal(typeof (SMTPServer.prototype as unknown as Record<string, unknown>)[name], 'function');
  });
}

for (const [name, kind] of Object.entries(STREAM_METHODS)) {
  test(`SMTPStream.prototype.${name} (${kind} by common/smtp-data-feed.ts) still exists`, () => {
    assert.equal(typeof (SMTPStream.prototype as unknown as Record<string, unknown>)[name], 'function');
  });
}

test('the lists in common/smtp-server.ts name exactly the methods its classes override, and the ones above', () => {
  assert.deepEqual(overridesOf(TunedConnection, SMTPConnection), [...CONNECTION_OVERRIDES].sort(), 'TunedConnection overrides = CONNECTION_OVERRIDES');
  assert.deepEqual(overridesOf(PostinoSMTPServer, SMTPServer), [...SERVER_OVERRIDES].sort(), 'PostinoSMTPServer overrides = SERVER_OVERRIDES');
  assert.deepEqual([...CONNECTION_OVERRIDES].sort(), namesWith(CONNECTION_METHODS, 'overridden'));
  assert.deepEqual([...CONNECTION_CALLS].sort(), namesWith(CONNECTION_METHODS, 'called'));
  assert.deepEqual([...SERVER_OVERRIDES].sort(), namesWith(SERVER_METHODS, 'overridden'));
  assert.deepEqual([...SERVER_CALLS].sort(), namesWith(SERVER_METHODS, 'called'));
  assert.deepEqual([...STREAM_OVERRIDES].sort(), namesWith(STREAM_METHODS, 'overridden'));
  assert.deepEqual([...STREAM_CALLS].sort(), namesWith(STREAM_METHODS, 'called'));
});

test('SMTPStream keeps the state common/smtp-command-line.ts reads, under the same names', () => {
  // A renamed field would read as undefined: `_dataMode` so would let the one-line path take body lines for commands.
  const s = new SMTPStream() as unknown as Record<string, unknown>;
  assert.equal(s._dataMode, false);
  assert.equal(s.isClosed, false);
  assert.equal(s._remainder, '');
  assert.equal(typeof s._maxCommandLength, 'number');
  (s as unknown as SMTPStream).startDataMode(10);
  assert.equal(s._dataMode, true);
});

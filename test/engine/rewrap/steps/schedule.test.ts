import assert from 'node:assert/strict';
import { test } from 'node:test';
import { controlHeaderProblem } from '../../../../common/control-headers.js';
import { parseSendAt } from '../../../../common/send-at.js';
import { parseHeaderBlock } from '../../../../common/mime-header.js';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

const msg = (at: string): string => `From: shop@example.org\nTo: a@example.com\nSubject: x\nX-Postino-Send-At: ${at}\n\nx\n`;

test('a future Send-At parks the copies until then; a past one sends now; a bad one rejects', async () => {
  const env = await rewrapEnv();
  try {
    const now = Date.parse('2026-11-25T10:00:00Z');
    assert.equal((await runRewrap(env, msg('2026-11-25T11:30:00+01:00'), ['a@example.com'], 'x@example.org', now)).msg.due, Date.parse('2026-11-25T10:30:00Z'));
    assert.equal((await runRewrap(env, msg('Tue, 24 Nov 2026 10:00:00 +0000'), ['a@example.com'], 'x@example.org', now)).msg.due, now);
    const bad = await runRewrap(env, msg('tomorrow morning'), ['a@example.com'], 'x@example.org', now);
    assert.equal(bad.result.kind, 'rejected');
    assert.equal(bad.copies.length, 0);
  } finally {
    await env.close();
  }
});

test('RFC 3339 and RFC 5322 dates parse; anything else is a problem the listener refuses', () => {
  assert.equal(parseSendAt('2026-11-25T10:00:00Z'), Date.parse('2026-11-25T10:00:00Z'));
  assert.equal(parseSendAt('2026-11-25T10:00:00.250-02:00'), Date.parse('2026-11-25T12:00:00.250Z'));
  assert.equal(parseSendAt('25 Nov 2026 10:00 +0100'), Date.parse('2026-11-25T09:00:00Z'));
  for (const bad of ['tomorrow', '2026-11-25', '1764064800', '2026-13-45T99:00:00Z', '']) assert.equal(parseSendAt(bad), undefined, bad);
  assert.match(controlHeaderProblem(parseHeaderBlock(Buffer.from('Subject: x\r\nX-Postino-Send-At: soon\r\n')), Date.UTC(2026, 10, 1))!, /X-Postino-Send-At: cannot parse "soon"/);
  assert.equal(controlHeaderProblem(parseHeaderBlock(Buffer.from('X-Postino-Send-At: 2026-11-25T10:00:00Z\r\n')), Date.UTC(2026, 10, 1)), undefined);
});

/*
 * mime-limits (the first message step): a message over engine.mimeNestingLimit
 * or engine.mimeMaxParts is rejected by this step, named as such, with the
 * limit as the reason and no copy made; one at the limit goes on.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MESSAGE_STEPS } from '../../../../engine/rewrap/pipeline.js';
import { deepMime, wideMime } from '../../../helpers/hostile.js';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

/** Footer on: before this step existed, the footer step was the one that refused (and was named). */
const FOOTER = { footer: { enabled: true, text: 'Bye', html: '<p>Bye</p>' } };

test('mime-limits is the first message step', () => {
  assert.equal(MESSAGE_STEPS[0]!.name, 'mime-limits');
});

test('101 nested multiparts: rejected by mime-limits with the nesting limit as the reason, no copy', async () => {
  const env = await rewrapEnv(FOOTER);
  try {
    const r = await runRewrap(env, Buffer.from(deepMime(100)), ['ada@example.com', 'bob@example.com']);
    assert.deepEqual(r.result, { kind: 'rejected', step: 'mime-limits', reason: 'message not rewrapped: MIME nesting deeper than 100 levels (engine.mimeNestingLimit)' });
    assert.equal(r.copies.length, 0);
  } finally {
    await env.close();
  }
});

test('more than 10,000 parts: rejected by mime-limits; 100 levels and 9,999 parts go on to a copy', async () => {
  const env = await rewrapEnv(FOOTER);
  try {
    const wide = await runRewrap(env, Buffer.from(wideMime(10_000)), ['ada@example.com']);
    assert.equal(wide.result.kind === 'rejected' && wide.result.step, 'mime-limits');
    assert.match(wide.result.kind === 'rejected' ? wide.result.reason : '', /more than 10000 MIME parts \(engine\.mimeMaxParts\)/);
    assert.equal((await runRewrap(env, Buffer.from(deepMime(99)), ['ada@example.com'])).copies.length, 1, '100 levels');
    assert.equal((await runRewrap(env, Buffer.from(wideMime(9_998)), ['ada@example.com'])).copies.length, 1, '10,000 parts with the message');
  } finally {
    await env.close();
  }
});

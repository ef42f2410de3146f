import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

test('control headers override the account defaults', async () => {
  const env = await rewrapEnv({ stream: 'bulk', track: { opens: true, clicks: true }, footer: { enabled: true } });
  try {
    const base = 'From: shop@example.org\nTo: a@example.com\nSubject: x\n';
    const d = await runRewrap(env, `${base}\nx\n`, ['a@example.com']);
    assert.deepEqual(
      { stream: d.msg.controls.stream, track: d.msg.controls.track, footer: d.msg.controls.footer },
      { stream: 'bulk', track: { opens: true, clicks: true }, footer: true },
      'account defaults',
    );
    const r = await runRewrap(
      env,
      `${base}X-Postino-Stream: Transactional\nX-Postino-Track: clicks\nX-Postino-Footer: off\nX-Postino-List: news\nX-Postino-Tag: order-1\nX-Postino-Metadata: customer=c-77; region = eu\n\nx\n`,
      ['a@example.com'],
    );
    const c = r.msg.controls;
    assert.deepEqual(
      { stream: c.stream, track: c.track, footer: c.footer, list: c.list, tag: c.tag, metadata: c.metadata },
      { stream: 'transactional', track: { opens: false, clicks: true }, footer: false, list: 'news', tag: 'order-1', metadata: { customer: 'c-77', region: 'eu' } },
    );
    const bad = await runRewrap(env, `${base}X-Postino-Stream: whatever\nX-Postino-Track: sometimes\n\nx\n`, ['a@example.com']);
    assert.equal(bad.msg.controls.stream, 'bulk', 'unknown values keep the default');
    assert.deepEqual(bad.msg.controls.track, { opens: true, clicks: true });
  } finally {
    await env.close();
  }
});

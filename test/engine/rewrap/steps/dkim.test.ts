import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { generateDkimKey } from '../../../../engine/rewrap/dkim-keys.js';
import { verifyDkim } from '../../../helpers/dkim-verify.js';
import { fixture, rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

test('every copy verifies with mailauth against the generated key, after tracking, footer, merge and unsubscribe rewrites', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-dkim-'));
  const key = generateDkimKey(dir, 'example.org', 's2026');
  assert.match(key.record, /^s2026\._domainkey\.example\.org\. IN TXT \( "v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+" ("[A-Za-z0-9+/=]+" )?\)$/);
  const env = await rewrapEnv({
    dkim: { selector: 's2026', keyFile: key.keyFile },
    track: { opens: true, clicks: true },
    footer: { enabled: true, text: 'Bye {{email}}', html: '<p>Bye {{email}}</p>' },
  }, { bounceDomain: 'bounce.example.net' });
  try {
    for (const name of ['newsletter.eml', 'mixed-qp-pdf.eml']) {
      const { copies } = await runRewrap(env, fixture(name), ['ada@example.com', 'bob@example.com']);
      assert.equal(copies.length, 2);
      for (const c of copies) {
        assert.match(c.headers, /^DKIM-Signature: /, 'the signature is the first header');
        assert.match(c.headers.replace(/\r\n\s+/g, ' '), /h=[^;]*List-Unsubscribe:List-Unsubscribe-Post/i, 'RFC 8058: both List-Unsubscribe fields are signed');
        const results = await verifyDkim(c.bytes, 'example.org', 's2026', key.privateKey);
        assert.equal(results.length, 1);
        assert.equal(results[0]!.status.result, 'pass', `${name} → ${c.recipient}: ${results[0]!.status.comment ?? ''}`);
        assert.equal(results[0]!.signingDomain, 'example.org', 'd= is the From domain');
        assert.equal(c.shared, undefined, 'a changed body is not handed over');
      }
      // A changed byte breaks it: the check is real.
      const tampered = Buffer.from(copies[0]!.bytes);
      tampered[tampered.length - 5] = tampered[tampered.length - 5]! ^ 1;
      assert.notEqual((await verifyDkim(tampered, 'example.org', 's2026', key.privateKey))[0]!.status.result, 'pass');
    }
    // Nothing in the body changes (tracking and footer off for this message): the copy is its head and
    // the intake body from an offset (Copy.shared, what the worker hands over), byte for byte what is
    // signed, and the signature verifies on it.
    const plain = 'From: shop@example.org\nTo: ada@example.com\nSubject: receipt\nX-Postino-Track: none\nX-Postino-Footer: off\n\nTotal: 12.00 EUR\n';
    const { copies } = await runRewrap(env, plain, ['ada@example.com']);
    assert.ok(copies[0]!.shared, 'an unchanged body is handed over');
    assert.deepEqual(copies[0]!.shared, copies[0]!.bytes);
    assert.equal((await verifyDkim(copies[0]!.shared!, 'example.org', 's2026', key.privateKey))[0]!.status.result, 'pass');
  } finally {
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

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
      }
      // A changed byte breaks it: the check is real.
      const tampered = Buffer.from(copies[0]!.bytes);
      tampered[tampered.length - 5] = tampered[tampered.length - 5]! ^ 1;
      assert.notEqual((await verifyDkim(tampered, 'example.org', 's2026', key.privateKey))[0]!.status.result, 'pass');
    }
  } finally {
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

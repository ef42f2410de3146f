import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeText, encodeText, hasLongLine, MAX_LINE_OCTETS } from '../../../engine/rewrap/mime-text.js';
import type { MimePart } from '../../../engine/rewrap/mime-scan.js';
import { seededRandom } from '../../helpers/random.js';

const part = (encoding: string, charset = 'utf-8'): MimePart => ({ index: 1, headerStart: 0, bodyStart: 0, bodyEnd: 0, headers: [], type: 'text/plain', params: { charset }, encoding, disposition: '', children: [] });

test('quoted-printable written a slice at a time decodes to the same text: long lines, CRLF at slice edges, trailing spaces, UTF-8', async () => {
  const rnd = seededRandom(5);
  const pieces = ['a', ' ', '\t', 'é', '€', '=', '\r\n', 'x'.repeat(997), ' \r\n'];
  for (const size of [10, 70_000, 200_000]) {
    let text = '';
    while (text.length < size) text += pieces[Math.floor(rnd() * pieces.length)];
    text += 'y'.repeat(150_000); // one line longer than a slice
    const enc = await encodeText(part('quoted-printable'), text);
    assert.ok(enc.body.toString('latin1').split('\r\n').every((l) => l.length <= 76), 'encoded lines ≤ 76');
    assert.equal(decodeText(part('quoted-printable'), enc.body), text);
  }
});

test('a 7bit or 8bit part with a line over 998 octets becomes quoted-printable; one within stays as it is', async () => {
  const ok = 'a'.repeat(MAX_LINE_OCTETS);
  assert.equal(hasLongLine(Buffer.from(`${ok}\r\n${ok}`)), false);
  assert.equal(hasLongLine(Buffer.from(`${ok}\r\n${ok}b`)), true);
  for (const encoding of ['7bit', '8bit']) {
    const kept = await encodeText(part(encoding), ok);
    assert.equal(kept.headers, undefined);
    const long = await encodeText(part(encoding), ok + 'b');
    assert.ok(long.headers?.some((f) => f.raw.toString() === 'Content-Transfer-Encoding: quoted-printable\r\n'));
    assert.equal(decodeText(part('quoted-printable'), long.body), ok + 'b');
  }
});

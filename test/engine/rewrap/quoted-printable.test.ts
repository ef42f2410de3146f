import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { decodeQuotedPrintable, encodeQuotedPrintable, QP_LINE } from '../../../engine/rewrap/quoted-printable.js';
import { requirePeer, type PeerCapability } from '../../helpers/peers.js';
import { seededRandom } from '../../helpers/random.js';

/** Debian's python3 (.ci/install-peers), the second decoder: its stdlib's quopri must import. */
const PYTHON = '/usr/bin/python3';
const quopri: PeerCapability = {
  missing: () => (spawnSync(PYTHON, ['-c', 'import quopri'], { timeout: 10_000 }).status === 0 ? undefined : 'its quopri module does not import'),
};

const enc = async (s: string | Buffer): Promise<string> => (await encodeQuotedPrintable(Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8'))).toString('latin1');

/** Python's own decoder (binascii.a2b_qp), a second reader of what we write. */
function pythonDecode(encoded: Buffer): Buffer {
  const r = spawnSync(PYTHON, ['-c', 'import sys, quopri; sys.stdout.buffer.write(quopri.decodestring(sys.stdin.buffer.read()))'], { input: encoded, maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr?.toString());
  return r.stdout;
}

/** Where a UTF-8 sequence starting at i would end, or i+1 for any other octet. */
function sequenceEnd(bytes: Buffer, i: number): number {
  const c = bytes[i]!;
  const n = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf8 ? 4 : 1;
  for (let k = 1; k < n; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i + 1;
  return i + n;
}

/** Every rule of RFC 2045 6.7 the encoder promises, checked on its output. */
function assertWellFormed(input: Buffer, out: string): void {
  assert.match(out, /^[\x20-\x7e\t\r\n]*$/, 'only printable ASCII, space, tab and CRLF');
  assert.doesNotMatch(out, /\r(?!\n)|(?<!\r)\n/, 'line breaks are CRLF pairs');
  assert.doesNotMatch(out, /[ \t](\r\n|$)/, 'no space or tab ends a line');
  assert.doesNotMatch(out, /=(?![0-9A-F]{2}|\r\n)/, 'every = is an escape or a soft break');
  const lines = out.split('\r\n');
  for (const l of lines) assert.ok(l.length <= QP_LINE, `line of ${l.length}: ${l}`);
  // No soft break inside an =XX or inside a UTF-8 sequence: each soft line decodes to whole sequences.
  let at = 0;
  for (const l of out.split(/(?<==)\r\n/)) {
    const bytes = decodeQuotedPrintable(Buffer.from(l.endsWith('=') ? l.slice(0, -1) : l, 'latin1'));
    const end = at + bytes.length;
    let k = at;
    while (k < end) k = sequenceEnd(input, k);
    assert.equal(k, end, `a soft break splits a character at octet ${end}`);
    at = end;
  }
}

test('quoted-printable: the rules of RFC 2045 6.7 on mixed text, and both our decoder and Python\'s give the bytes back', async () => {
  // Without the peer, our own checks still run; Python's reading of the output is skipped visibly.
  const python = requirePeer('python3', PYTHON, [quopri]) === undefined;
  const rnd = seededRandom(17);
  const pieces = ['a', 'word ', ' ', '\t', 'é', '€', '😀', '=', '\r\n', ' \r\n', '\t\r\n', 'x'.repeat(74), 'y'.repeat(200), '=3D', '.', 'ü'.repeat(40)];
  const raw = [Buffer.from([0x0d]), Buffer.from([0x0a]), Buffer.from([0x00, 0x7f, 0xff]), Buffer.from([0xe2, 0x82])];
  for (const size of [0, 1, 75, 76, 77, 2_000, 70_000, 200_000]) {
    const chunks: Buffer[] = [];
    let n = 0;
    while (n < size) {
      const b = rnd() < 0.05 ? raw[Math.floor(rnd() * raw.length)]! : Buffer.from(pieces[Math.floor(rnd() * pieces.length)]!, 'utf8');
      chunks.push(b);
      n += b.length;
    }
    const input = Buffer.concat(chunks);
    const out = await encodeQuotedPrintable(input);
    const text = out.toString('latin1');
    assertWellFormed(input, text);
    assert.ok(decodeQuotedPrintable(out).equals(input), `our decoder, size ${size}`);
    if (python) assert.ok(pythonDecode(out).equals(input), `Python's decoder, size ${size}`);
  }
});

test('quoted-printable: exact cases (76-character lines kept, trailing white space, soft breaks before a sequence that does not fit)', async () => {
  assert.equal(await enc(''), '');
  assert.equal(await enc('a=b'), 'a=3Db');
  assert.equal(await enc('end \r\nnext\t'), 'end=20\r\nnext=09');
  assert.equal(await enc('a \tb'), 'a \tb');
  assert.equal(await enc('x'.repeat(76)), 'x'.repeat(76));
  assert.equal(await enc('x'.repeat(76) + '\r\n'), 'x'.repeat(76) + '\r\n');
  assert.equal(await enc('x'.repeat(77)), 'x'.repeat(75) + '=\r\n' + 'xx');
  // A space at the 76th column before the line's end must be encoded, so it goes to the next line.
  assert.equal(await enc('x'.repeat(75) + ' \r\n'), 'x'.repeat(75) + '=\r\n=20\r\n');
  // "é" is =C3=A9: it is not split over a soft break.
  assert.equal(await enc('x'.repeat(72) + 'é' + 'z'), 'x'.repeat(72) + '=\r\n=C3=A9z');
  assert.equal(await enc('x'.repeat(70) + 'é'), 'x'.repeat(70) + '=C3=A9');
  // A lone CR or LF is data.
  assert.equal(await enc(Buffer.from('a\rb\nc')), 'a=0Db=0Ac');
});

test('quoted-printable decoding is lenient: lower-case hex, a stray = and white space before a soft break', () => {
  const dec = (s: string): string => decodeQuotedPrintable(Buffer.from(s, 'latin1')).toString('latin1');
  assert.equal(dec('=3d=3D'), '==');
  assert.equal(dec('a=zz=4'), 'a=zz=4');
  assert.equal(dec('soft= \t\r\nbreak=\nlf'), 'softbreaklf');
  assert.equal(dec('=C3=A9'), Buffer.from('é', 'utf8').toString('latin1'));
});

/* proxy-v2.ts: header parsing, partial input, limits. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProxyV2, V2_SIGNATURE } from '../../common/proxy-v2.js';

function header(verCmd: number, fam: number, addr: number[]): Buffer {
  const h = Buffer.alloc(16);
  V2_SIGNATURE.copy(h);
  h[12] = verCmd;
  h[13] = fam;
  h.writeUInt16BE(addr.length, 14);
  return Buffer.concat([h, Buffer.from(addr)]);
}

test('TCP4 header: address and port, the bytes after it are left over', () => {
  const h = header(0x21, 0x11, [192, 0, 2, 7, 127, 0, 0, 1, 0x9c, 0x40, 0x0a, 0x1b]);
  const r = parseProxyV2(Buffer.concat([h, Buffer.from('EHLO x\r\n')]));
  assert.deepEqual(r, { result: { kind: 'address', remoteAddress: '192.0.2.7', remotePort: 40000 }, used: h.length });
});

test('partial headers ask for more; text (v1) is not v2; LOCAL keeps the socket address; limits hold', () => {
  const h = header(0x21, 0x11, [192, 0, 2, 7, 127, 0, 0, 1, 0, 1, 0, 2]);
  for (const n of [1, 11, 12, 15, 20]) assert.equal(parseProxyV2(h.subarray(0, n)), undefined, `${n} bytes`);
  assert.deepEqual(parseProxyV2(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')), { result: { kind: 'not-v2' }, used: 0 });
  assert.equal(parseProxyV2(header(0x20, 0x00, []))!.result.kind, 'local');
  assert.equal(parseProxyV2(header(0x11, 0x11, []))!.result.kind, 'invalid', 'version 1 in a v2 header');
  const huge = Buffer.alloc(16);
  V2_SIGNATURE.copy(huge);
  huge[12] = 0x21;
  huge.writeUInt16BE(60000, 14);
  assert.deepEqual(parseProxyV2(huge)!.result, { kind: 'invalid', reason: 'PROXY v2: header too long' });
});

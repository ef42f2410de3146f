/*
 * proxy-v2.ts — reads an HAProxy PROXY protocol v2 header (the binary one)
 * from a freshly accepted socket. smtp-server reads only v1 (the text line);
 * common/smtp-server.ts calls this first and falls back to smtp-server's v1
 * reader when the bytes are not the v2 signature.
 *
 * Standard: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt §2.2.
 * Header: 12-byte signature, version/command, family/protocol, 2-byte length,
 * addresses. LOCAL (health checks) and non-TCP families keep the socket's own
 * address. The header is bounded (MAX_V2_LENGTH) so a peer cannot make us buffer.
 *
 * Side effects: reads from the socket; puts back (unshift) bytes that follow.
 */
import net from 'node:net';

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** IPv6 addresses plus ports are 36 bytes; TLVs (ALPN, SSL info) make real headers a few hundred. */
const MAX_V2_LENGTH = 1024;

export type ProxyV2Result =
  | { kind: 'not-v2' }
  | { kind: 'address'; remoteAddress: string; remotePort: number }
  | { kind: 'local' }
  | { kind: 'invalid'; reason: string };

function ipv6(b: Buffer): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(b.readUInt16BE(i).toString(16));
  return parts.join(':');
}

/** Parses a complete header at the start of `buf`; undefined when more bytes are needed. */
export function parseProxyV2(buf: Buffer): { result: ProxyV2Result; used: number } | undefined {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  if (!buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return { result: { kind: 'not-v2' }, used: 0 };
  if (buf.length < 16) return undefined;
  const verCmd = buf[12]!;
  const fam = buf[13]!;
  const len = buf.readUInt16BE(14);
  if (verCmd >> 4 !== 2) return { result: { kind: 'invalid', reason: 'PROXY v2: bad version' }, used: 0 };
  if (len > MAX_V2_LENGTH) return { result: { kind: 'invalid', reason: 'PROXY v2: header too long' }, used: 0 };
  if (buf.length < 16 + len) return undefined;
  const used = 16 + len;
  const body = buf.subarray(16, used);
  const cmd = verCmd & 0x0f;
  if (cmd === 0x0) return { result: { kind: 'local' }, used };
  if (cmd !== 0x1) return { result: { kind: 'invalid', reason: 'PROXY v2: bad command' }, used: 0 };
  if (fam === 0x11 && len >= 12) {
    const addr = [...body.subarray(0, 4)].join('.');
    return { result: { kind: 'address', remoteAddress: addr, remotePort: body.readUInt16BE(8) }, used };
  }
  if (fam === 0x21 && len >= 36) {
    const addr = ipv6(body.subarray(0, 16));
    if (!net.isIPv6(addr)) return { result: { kind: 'invalid', reason: 'PROXY v2: bad address' }, used: 0 };
    return { result: { kind: 'address', remoteAddress: addr, remotePort: body.readUInt16BE(32) }, used };
  }
  return { result: { kind: 'local' }, used }; // UNSPEC / UNIX: no client address to take over
}

/**
 * Waits for the first bytes of `socket`: a v2 header is consumed and reported;
 * anything else is put back untouched (`not-v2`) for the v1 reader.
 */
export function readProxyV2(socket: net.Socket, done: (err: Error | null, r?: ProxyV2Result) => void): void {
  let buf = Buffer.alloc(0);
  let finished = false;
  const finish = (err: Error | null, r?: ProxyV2Result): void => {
    if (finished) return;
    finished = true;
    socket.off('readable', onReadable);
    socket.off('error', onError);
    socket.off('close', onClose);
    done(err, r);
  };
  const onError = (e: Error): void => finish(e);
  const onClose = (): void => finish(new Error('Socket closed before PROXY header was received'));
  function onReadable(): void {
    let chunk: Buffer | null;
    while ((chunk = socket.read() as Buffer | null) !== null) buf = Buffer.concat([buf, chunk]);
    const parsed = parseProxyV2(buf);
    if (!parsed) return;
    const rest = buf.subarray(parsed.used);
    socket.off('readable', onReadable);
    if (rest.length) socket.unshift(rest);
    finish(null, parsed.result);
  }
  socket.on('readable', onReadable);
  socket.on('error', onError);
  socket.on('close', onClose);
}

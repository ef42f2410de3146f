/*
 * cidr.ts — parse CIDR lists and test client addresses against them.
 *
 * Standards: RFC 4632 (CIDR notation), RFC 4291 2.5.5.2 (IPv4-mapped IPv6
 * addresses, which Node reports for IPv4 clients on dual-stack sockets).
 * Side effects: none. Uses node:net's BlockList so that matching is done by
 * the same code Node uses, not by string prefixes.
 */
import net from 'node:net';

export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** Returns the parsed CIDR, or an error message a config report can show. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const version = net.isIP(address);
  if (version === 0) return `"${text}" is not an IPv4 or IPv6 address or CIDR`;
  const max = version === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return `"${text}" has a prefix length outside 0..${max}`;
    prefix = Number(p);
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** Strips the IPv4-mapped prefix so "::ffff:127.0.0.1" matches "127.0.0.0/8". */
export function normalizeIp(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** Distinct client addresses remembered per list; past it the memo starts over (clients are few, scanners many). */
const MEMO_MAX = 4096;

export class NetworkList {
  private readonly list = new net.BlockList();
  /**
   * Answers per address: BlockList.check builds a SocketAddress per call, and a session asks
   * several lists (allowlist, trusted networks, every account's networks) about the same
   * client: ~80 µs of CPU per message in a profile of the hosted node (issue #17).
   */
  private readonly memo = new Map<string, boolean>();

  constructor(readonly cidrs: readonly string[]) {
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (typeof c === 'string') throw new Error(c);
      this.list.addSubnet(c.address, c.prefix, c.family);
    }
  }

  contains(address: string | undefined): boolean {
    if (!address) return false;
    const known = this.memo.get(address);
    if (known !== undefined) return known;
    const a = normalizeIp(address);
    const version = net.isIP(a);
    const inside = version !== 0 && this.list.check(a, version === 4 ? 'ipv4' : 'ipv6');
    if (this.memo.size >= MEMO_MAX) this.memo.clear();
    this.memo.set(address, inside);
    return inside;
  }
}

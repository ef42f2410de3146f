/*
 * network-policy.ts — which networks the accounts API adds to an account
 * without `force`: not everything (0.0.0.0/0, ::/0, which would make the
 * listener an open door for anyone who learns an account's sender domain),
 * and nothing wider than listener.minAccountPrefix (IPv4 /16, IPv6 /32 by
 * default). The reason is returned so the API and the CLI can say it.
 *
 * Config: listener.minAccountPrefix.{ipv4 (16), ipv6 (32)}.
 * Side effects: none.
 */
import { parseCidr } from '../../common/cidr.js';
import type { ListenerConfig } from '../../common/config.js';

/** Why this CIDR is too broad to add without force, or undefined when it is fine (or not a CIDR: the schema says so). */
export function tooBroad(text: string, min: ListenerConfig['minAccountPrefix']): string | undefined {
  const c = parseCidr(text);
  if (typeof c === 'string') return undefined;
  if (c.prefix === 0) return `${text} is every ${c.family === 'ipv4' ? 'IPv4' : 'IPv6'} address: anyone could connect as this account`;
  const least = c.family === 'ipv4' ? min.ipv4 : min.ipv6;
  if (c.prefix < least) return `${text} is wider than /${least} (listener.minAccountPrefix.${c.family}): ${c.family === 'ipv4' ? `${2 ** (32 - c.prefix)} addresses` : 'a whole provider network'}`;
  return undefined;
}

/*
 * address.ts — e-mail addresses and their domains: split, normalise, compare.
 * (IP addresses are cidr.ts's.)
 *
 * Standards: RFC 5321 2.4 (the domain is case-insensitive; the local part may
 * be case-sensitive, so it is kept as given) and 4.1.2 (a quoted local part
 * may hold "@", hence the split at the last one).
 * Side effects: none.
 */

export interface AddressParts {
  local: string;
  /** As given (not lower-cased). */
  domain: string;
}

/** Local part and domain, split at the last "@"; undefined when there is none. */
export function splitAddress(address: string): AddressParts | undefined {
  const at = address.lastIndexOf('@');
  return at === -1 ? undefined : { local: address.slice(0, at), domain: address.slice(at + 1) };
}

/** The domain, lower-cased; '' when there is no "@". */
export function domainOf(address: string): string {
  return (splitAddress(address)?.domain ?? '').toLowerCase();
}

/** Trimmed, domain lower-cased, local part kept: the form stored in the suppression list and recipient database. */
export function normalizeEmail(address: string): string {
  const a = address.trim();
  const p = splitAddress(a);
  return p ? `${p.local}@${p.domain.toLowerCase()}` : a;
}

/**
 * The whole address lower-cased, for telling whether two mentions are the
 * same mailbox in practice (a recipient against the To:/Cc: addresses).
 */
export function caseFoldedEmail(address: string): string {
  return normalizeEmail(address).toLowerCase();
}

/** `example.org` matches itself; `*.example.org` matches its subdomains and itself. No patterns: any domain. */
export function domainAllowed(domain: string, patterns: readonly string[]): boolean {
  if (patterns.length === 0) return true;
  const d = domain.toLowerCase();
  return patterns.some((p) => {
    const q = p.toLowerCase();
    if (q.startsWith('*.')) return d === q.slice(2) || d.endsWith(q.slice(1));
    return d === q;
  });
}

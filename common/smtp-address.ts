/*
 * smtp-address.ts — MAIL FROM and RCPT TO in the plain form nearly every client
 * sends (`MAIL FROM:<local@domain.example> SIZE=2048`) parsed by a direct scan,
 * into the same object smtp-server's `_parseAddressCommand` makes of it.
 *
 * Why (issue #17): smtp-server's parser turns the line into a string, splits it
 * on ':' and on whitespace, tests four regular expressions, splits the address
 * on '@', and passes the domain through punycode's `toUnicode` (which splits and
 * maps it label by label) for every MAIL and RCPT: ~3–5 µs of the forwarder's
 * main thread a message in CPU profiles at `-d` (two commands a message).
 *
 * What is taken here, and nothing else (anything else answers undefined and goes
 * to smtp-server's parser, which decides as before): printable ASCII only; the
 * verb and the colon written together, the address right after the colon in
 * angle brackets, empty (the null sender) or `local@domain` with one '@'; a
 * local part of characters other than brackets and space, without a dot at
 * either end or two dots together; a domain of letters, digits, dots and
 * hyphens, without a dot at either end, '..', '.-' or '-.', and no label
 * starting `xn--` (punycode would rewrite it); at most 253 octets; then
 * parameters each after one space, `KEY` or `KEY=value`, the key letters,
 * digits and hyphens, the value non-empty without '+' (xtext) or '=', no key
 * twice. For every such line smtp-server's parser returns exactly
 * `{ address, args }` with `args` false when there are no parameters, else the
 * keys upper-cased with their values (true for a bare key): its regular
 * expressions all pass, the split finds the same pieces, and `toUnicode`
 * leaves a domain without an `xn--` label as it is.
 * test/common/smtp-address.test.ts holds that to smtp-server's own parser over a
 * generated corpus of lines of both kinds.
 */
import { DOT } from './line-scan.js';

/** What smtp-server's `_parseAddressCommand` returns for a line it accepts (without a duplicate). */
export interface ParsedAddress {
  address: string;
  args: Record<string, string | true> | false;
}

const LT = 0x3c;
const GT = 0x3e;
const AT = 0x40;
const SPACE = 0x20;
const EQ = 0x3d;
const PLUS = 0x2b;
const HYPHEN = 0x2d;
/** RFC 5321 4.5.3.1.3, as smtp-server enforces it: local part, '@' and domain at most 253 octets. */
const MAX_PATH = 253;

const PREFIX: Record<'mail from' | 'rcpt to', Buffer> = { 'mail from': Buffer.from('mail from:<'), 'rcpt to': Buffer.from('rcpt to:<') };

const isLetterOrDigit = (c: number): boolean => (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a);

/** The plain form's parse (see the header), or undefined for anything else. */
export function plainAddressCommand(verb: 'mail from' | 'rcpt to', command: Buffer): ParsedAddress | undefined {
  const prefix = PREFIX[verb];
  const len = command.length;
  if (len < prefix.length + 1) return undefined;
  for (let i = 0; i < prefix.length; i++) {
    const c = command[i]!;
    // Letters in either case; the space, colon and '<' as they are.
    if ((prefix[i]! >= 0x61 ? c | 0x20 : c) !== prefix[i]) return undefined;
  }
  const start = prefix.length;
  let at = -1;
  let end = -1;
  for (let i = start; i < len; i++) {
    const c = command[i]!;
    if (c === GT) {
      end = i;
      break;
    }
    if (c <= SPACE || c >= 0x7f || c === LT) return undefined;
    if (c === AT) {
      if (at !== -1) return undefined;
      at = i;
    }
  }
  if (end === -1) return undefined;
  let address = '';
  if (end > start) {
    if (at <= start || at >= end - 1 || end - start > MAX_PATH) return undefined;
    if (!plainLocalPart(command, start, at) || !plainDomain(command, at + 1, end)) return undefined;
    address = command.toString('latin1', start, end);
  }
  const args = plainParameters(command, end + 1);
  return args === undefined ? undefined : { address, args };
}

function plainLocalPart(b: Buffer, from: number, to: number): boolean {
  if (b[from] === DOT || b[to - 1] === DOT) return false;
  for (let i = from + 1; i < to; i++) if (b[i] === DOT && b[i - 1] === DOT) return false;
  return true;
}

function plainDomain(b: Buffer, from: number, to: number): boolean {
  if (b[from] === DOT || b[to - 1] === DOT) return false;
  for (let i = from; i < to; i++) {
    const c = b[i]!;
    if (c === DOT) {
      const next = b[i + 1]!;
      if (next === DOT || next === HYPHEN) return false;
      continue;
    }
    if (c === HYPHEN) {
      if (b[i + 1] === DOT) return false;
      continue;
    }
    if (!isLetterOrDigit(c)) return false;
  }
  // An A-label anywhere: punycode.toUnicode would give the domain back in Unicode.
  for (let i = from; i + 3 < to; i++) {
    if ((i === from || b[i - 1] === DOT) && (b[i]! | 0x20) === 0x78 && (b[i + 1]! | 0x20) === 0x6e && b[i + 2] === HYPHEN && b[i + 3] === HYPHEN) return false;
  }
  return true;
}

/** The parameters from `from` on (after the '>'), or undefined when they are not in the plain form. */
function plainParameters(b: Buffer, from: number): ParsedAddress['args'] | undefined {
  if (from === b.length) return false;
  const args: Record<string, string | true> = {};
  let i = from;
  while (i < b.length) {
    if (b[i] !== SPACE) return undefined;
    const keyStart = ++i;
    while (i < b.length && (isLetterOrDigit(b[i]!) || b[i] === HYPHEN)) i++;
    if (i === keyStart) return undefined;
    const key = b.toString('latin1', keyStart, i).toUpperCase();
    if (key in args) return undefined;
    if (i === b.length || b[i] === SPACE) {
      args[key] = true;
      continue;
    }
    if (b[i] !== EQ) return undefined;
    const valueStart = ++i;
    while (i < b.length && b[i]! > SPACE && b[i]! < 0x7f && b[i] !== PLUS && b[i] !== EQ) i++;
    if (i === valueStart || (i < b.length && b[i] !== SPACE)) return undefined;
    args[key] = b.toString('latin1', valueStart, i);
  }
  return args;
}

/*
 * tokens.ts — HMAC-signed tokens for VERP return paths, one-click unsubscribe
 * links, open pixels and click redirects (DESIGN.md guarantee 5: tokens cannot
 * be forged; a click never redirects to a URL that was not in the message).
 *
 * Key: <data>/secrets/signing-key (common/secrets.ts ensureSecret). Each kind
 * of token is signed over its own label, so a token of one kind never verifies
 * as another. MACs are HMAC-SHA256, truncated:
 *   - URL tokens (unsubscribe, open, click): 128 bits, `<base64url payload>.<base64url mac>`;
 *   - VERP tokens: 80 bits in lower-case base32, so the whole return path fits
 *     the 64-octet local part of RFC 5321 4.5.3.1.1 and survives MTAs that
 *     change the case of local parts.
 * Verify functions return undefined for anything malformed or tampered; the
 * HTTP side turns that into 400 (never a redirect).
 * Side effects: none.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const URL_MAC_BYTES = 16;
const VERP_MAC_BYTES = 10;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
/** Queue ids (common/durable-queue.ts newQueueId) are upper-case base36 and hex. */
const QUEUE_ID = /^[0-9A-Z]{8,40}$/;

export type TokenKind = 'unsubscribe' | 'open' | 'click';

function mac(key: string, label: string, payload: string, bytes: number): Buffer {
  return createHmac('sha256', key).update(label).update('\0').update(payload).digest().subarray(0, bytes);
}

function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function base32(buf: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** A URL token carrying `fields` (JSON array) under a MAC. */
function signFields(key: string, kind: TokenKind, fields: string[]): string {
  const payload = Buffer.from(JSON.stringify(fields)).toString('base64url');
  return `${payload}.${mac(key, kind, payload, URL_MAC_BYTES).toString('base64url')}`;
}

function verifyFields(key: string, kind: TokenKind, token: string, count: number): string[] | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0 || dot !== token.lastIndexOf('.')) return undefined;
  const payload = token.slice(0, dot);
  // Compared as text: base64 has spare bits in its last character, so decoding first would
  // accept several spellings of one MAC (a changed token that still verifies).
  const given = Buffer.from(token.slice(dot + 1));
  if (!equal(given, Buffer.from(mac(key, kind, payload, URL_MAC_BYTES).toString('base64url')))) return undefined;
  try {
    const fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown;
    if (!Array.isArray(fields) || fields.length !== count || !fields.every((f) => typeof f === 'string')) return undefined;
    return fields as string[];
  } catch {
    return undefined;
  }
}

// ---- VERP -----------------------------------------------------------------

/** `<queue id, lower-cased>-<base32 MAC over queue id and recipient>`: 34 characters for our queue ids. */
export function signVerpToken(key: string, queueId: string, recipient: string): string {
  return `${queueId.toLowerCase()}-${base32(mac(key, 'verp', `${queueId}\0${recipient.toLowerCase()}`, VERP_MAC_BYTES))}`;
}

/** The queue id a VERP token names (unverified: look up its recipient, then `verifyVerpToken`). */
export function verpQueueId(token: string): string | undefined {
  const m = /^([0-9a-z]+)-[a-z2-7]+$/i.exec(token);
  const id = m?.[1]?.toUpperCase();
  return id && QUEUE_ID.test(id) ? id : undefined;
}

/** True when the token was signed by us for this queue id and recipient. */
export function verifyVerpToken(key: string, token: string, recipient: string): boolean {
  const id = verpQueueId(token);
  if (!id) return false;
  return equal(Buffer.from(token.toLowerCase()), Buffer.from(signVerpToken(key, id, recipient)));
}

/** `<local>+<token>@<domain>` (the return path of one copy). */
export function verpAddress(key: string, local: string, domain: string, queueId: string, recipient: string): string {
  return `${local}+${signVerpToken(key, queueId, recipient)}@${domain}`;
}

// ---- unsubscribe, open, click ----------------------------------------------

export interface UnsubscribeClaim {
  account: string;
  /** The list (unsubscribe scope); '' for account-wide. */
  list: string;
  recipient: string;
}

export function signUnsubscribeToken(key: string, c: UnsubscribeClaim): string {
  return signFields(key, 'unsubscribe', [c.account, c.list, c.recipient]);
}

export function verifyUnsubscribeToken(key: string, token: string): UnsubscribeClaim | undefined {
  const f = verifyFields(key, 'unsubscribe', token, 3);
  return f ? { account: f[0]!, list: f[1]!, recipient: f[2]! } : undefined;
}

export interface OpenClaim {
  account: string;
  queueId: string;
  recipient: string;
}

export function signOpenToken(key: string, c: OpenClaim): string {
  return signFields(key, 'open', [c.account, c.queueId, c.recipient]);
}

export function verifyOpenToken(key: string, token: string): OpenClaim | undefined {
  const f = verifyFields(key, 'open', token, 3);
  return f ? { account: f[0]!, queueId: f[1]!, recipient: f[2]! } : undefined;
}

export interface ClickClaim extends OpenClaim {
  /** The original link, exactly as it was in the message. */
  url: string;
}

export function signClickToken(key: string, c: ClickClaim): string {
  return signFields(key, 'click', [c.account, c.queueId, c.recipient, c.url]);
}

/** The claim of an untampered click token whose URL is http(s); undefined otherwise (→ 400, no redirect). */
export function verifyClickToken(key: string, token: string): ClickClaim | undefined {
  const f = verifyFields(key, 'click', token, 4);
  if (!f || !/^https?:\/\//i.test(f[3]!)) return undefined;
  return { account: f[0]!, queueId: f[1]!, recipient: f[2]!, url: f[3]! };
}

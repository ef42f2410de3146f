/*
 * tokens.ts — the tokens in VERP return paths, one-click unsubscribe links,
 * open pixels and click redirects (DESIGN.md guarantee 5: tokens cannot be
 * forged; a click never redirects to a URL that was not in the message).
 *
 * Every token names the id of the key that made it (common/signing-keys.ts),
 * so `postino keys rotate` changes the signing key while links already in
 * mailboxes keep working. Each kind of token is bound to its own label, so a
 * token of one kind never verifies as another.
 *
 *   - URL tokens (unsubscribe, open, click): `<key id>.<base64url>` where the
 *     base64url holds a 96-bit random salt, the claims encrypted with
 *     AES-256-GCM, and GCM's 128-bit tag. The key for each token is
 *     HMAC-SHA256(secret, label ‖ salt), so every token has a key of its own
 *     and GCM's nonce can stay fixed (no nonce reuse however many links we
 *     mint). Encrypted rather than only signed: the recipient's address is not
 *     readable in a link that a mail client, proxy or log may show.
 *   - VERP tokens: `<queue id>-<key id>-<80-bit MAC>` in lower-case base32, so
 *     the whole return path fits the 64-octet local part of RFC 5321
 *     4.5.3.1.1 and survives MTAs that change the case of local parts. The
 *     queue id is readable (it is an opaque id); the recipient is found from
 *     it (engine/feedback/copy-index.ts) and the MAC binds the two.
 *   - Unsubscribe tokens never expire; open and click tokens carry an optional
 *     expiry (engine.tracking.linkTtlDays).
 *
 * Verify functions return undefined for anything malformed, tampered,
 * expired or made with a key we do not have; the HTTP side turns that into
 * 400 (never a redirect).
 * Side effects: none.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import { splitAddress } from './address.js';
import { randomBuffer } from './random-pool.js';
import type { KeyRing, SigningKey } from './signing-keys.js';

const SALT_BYTES = 12;
const TAG_BYTES = 16;
/** Each token has its own key (derived from its salt), so a fixed nonce is never reused under one key. */
const FIXED_NONCE = Buffer.alloc(12);
const VERP_MAC_BYTES = 10;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
/** Queue ids (common/durable-queue.ts newQueueId) are upper-case base36 and hex. */
const QUEUE_ID = /^[0-9A-Z]{8,40}$/;
const KEY_ID = /^[0-9a-z]{1,6}$/;
const VERP_TOKEN = /^([0-9a-z]{8,40})-([0-9a-z]{1,6})-([a-z2-7]{16})$/;

export type TokenKind = 'unsubscribe' | 'open' | 'click';

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

function tokenKey(key: SigningKey, kind: TokenKind, salt: Buffer): Buffer {
  return createHmac('sha256', key.secret).update(kind).update('\0').update(salt).digest();
}

/** A URL token carrying `fields` (JSON array), encrypted and authenticated. */
function seal(ring: KeyRing, kind: TokenKind, fields: Array<string | number>): string {
  const key = ring.current;
  const salt = randomBuffer(SALT_BYTES);
  const cipher = createCipheriv('aes-256-gcm', tokenKey(key, kind, salt), FIXED_NONCE);
  cipher.setAAD(Buffer.from(`${kind}\0${key.id}`));
  const body = Buffer.concat([cipher.update(JSON.stringify(fields), 'utf8'), cipher.final()]);
  return `${key.id}.${Buffer.concat([salt, body, cipher.getAuthTag()]).toString('base64url')}`;
}

function open(ring: KeyRing, kind: TokenKind, token: string): unknown[] | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  const id = token.slice(0, dot);
  const data = token.slice(dot + 1);
  // Canonical base64url only: decoding is lenient (spare bits, stray characters), and a
  // changed token must not verify just because it decodes to the same bytes.
  if (!KEY_ID.test(id) || !/^[A-Za-z0-9_-]+$/.test(data)) return undefined;
  const raw = Buffer.from(data, 'base64url');
  if (raw.length < SALT_BYTES + TAG_BYTES + 2 || raw.toString('base64url') !== data) return undefined;
  const key = ring.get(id);
  if (!key) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', tokenKey(key, kind, raw.subarray(0, SALT_BYTES)), FIXED_NONCE);
    decipher.setAAD(Buffer.from(`${kind}\0${key.id}`));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    const plain = Buffer.concat([decipher.update(raw.subarray(SALT_BYTES, raw.length - TAG_BYTES)), decipher.final()]);
    const fields = JSON.parse(plain.toString('utf8')) as unknown;
    return Array.isArray(fields) ? fields : undefined;
  } catch {
    return undefined; // wrong tag (tampered, or another kind's token) or not our JSON
  }
}

function strings(f: unknown[] | undefined, count: number): string[] | undefined {
  if (!f || f.length < count) return undefined;
  const head = f.slice(0, count);
  return head.every((x) => typeof x === 'string') ? (head as string[]) : undefined;
}

/** Expiry in seconds since the epoch, 0 = never; past it the token is refused. */
function expired(f: unknown[], at: number, nowMs: number): boolean {
  const exp = f[at];
  return typeof exp === 'number' && exp > 0 && nowMs / 1000 > exp;
}

// ---- VERP -----------------------------------------------------------------

function verpMac(key: SigningKey, queueId: string, recipient: string): string {
  return base32(createHmac('sha256', key.secret).update('verp\0').update(`${queueId}\0${recipient.toLowerCase()}`).digest().subarray(0, VERP_MAC_BYTES));
}

/** `<queue id, lower-cased>-<key id>-<base32 MAC over queue id and recipient>`: 36 characters for our queue ids. */
export function signVerpToken(ring: KeyRing, queueId: string, recipient: string): string {
  const key = ring.current;
  return `${queueId.toLowerCase()}-${key.id}-${verpMac(key, queueId, recipient)}`;
}

/** The queue id a VERP token names (unverified: look up its recipient, then `verifyVerpToken`). */
export function verpQueueId(token: string): string | undefined {
  const id = VERP_TOKEN.exec(token.toLowerCase())?.[1]?.toUpperCase();
  return id && QUEUE_ID.test(id) ? id : undefined;
}

/** True when the token was signed by us for this queue id and recipient. */
export function verifyVerpToken(ring: KeyRing, token: string, recipient: string): boolean {
  const m = VERP_TOKEN.exec(token.toLowerCase());
  const key = m && ring.get(m[2]!);
  if (!m || !key) return false;
  return equal(Buffer.from(m[3]!), Buffer.from(verpMac(key, m[1]!.toUpperCase(), recipient)));
}

/** `<local>+<token>@<domain>` (the return path of one copy). */
export function verpAddress(ring: KeyRing, local: string, domain: string, queueId: string, recipient: string): string {
  return `${local}+${signVerpToken(ring, queueId, recipient)}@${domain}`;
}

/** The token of a VERP address `<local>+<token>@<domain>` whose local and domain match; undefined otherwise. */
export function verpTokenOf(address: string, local: string, domains: ReadonlySet<string>): string | undefined {
  const parts = splitAddress(address);
  if (!parts?.local || !domains.has(parts.domain.toLowerCase())) return undefined;
  const lp = parts.local;
  const plus = lp.indexOf('+');
  if (plus <= 0 || lp.slice(0, plus).toLowerCase() !== local.toLowerCase()) return undefined;
  const token = lp.slice(plus + 1);
  return VERP_TOKEN.test(token.toLowerCase()) ? token : undefined;
}

// ---- unsubscribe, open, click ----------------------------------------------

export interface UnsubscribeClaim {
  account: string;
  /** The list (unsubscribe scope); '' for account-wide. */
  list: string;
  recipient: string;
  /** The copy the link was in ('' when unknown): attribution of the `unsubscribed` event. */
  queueId: string;
}

export function signUnsubscribeToken(ring: KeyRing, c: UnsubscribeClaim): string {
  return seal(ring, 'unsubscribe', [c.account, c.list, c.recipient, c.queueId]);
}

export function verifyUnsubscribeToken(ring: KeyRing, token: string): UnsubscribeClaim | undefined {
  const f = strings(open(ring, 'unsubscribe', token), 4);
  return f ? { account: f[0]!, list: f[1]!, recipient: f[2]!, queueId: f[3]! } : undefined;
}

export interface OpenClaim {
  account: string;
  queueId: string;
  recipient: string;
}

/** `expiresAt`: seconds since the epoch, 0 or absent = never. */
export function signOpenToken(ring: KeyRing, c: OpenClaim, expiresAt = 0): string {
  return seal(ring, 'open', [c.account, c.queueId, c.recipient, expiresAt]);
}

export function verifyOpenToken(ring: KeyRing, token: string, nowMs = Date.now()): OpenClaim | undefined {
  const raw = open(ring, 'open', token);
  const f = strings(raw, 3);
  if (!f || expired(raw!, 3, nowMs)) return undefined;
  return { account: f[0]!, queueId: f[1]!, recipient: f[2]! };
}

export interface ClickClaim extends OpenClaim {
  /** The original link, exactly as it was in the message. */
  url: string;
}

export function signClickToken(ring: KeyRing, c: ClickClaim, expiresAt = 0): string {
  return seal(ring, 'click', [c.account, c.queueId, c.recipient, c.url, expiresAt]);
}

/** The claim of an untampered, unexpired click token whose URL is http(s); undefined otherwise (→ 400, no redirect). */
export function verifyClickToken(ring: KeyRing, token: string, nowMs = Date.now()): ClickClaim | undefined {
  const raw = open(ring, 'click', token);
  const f = strings(raw, 4);
  if (!f || expired(raw!, 4, nowMs) || !/^https?:\/\//i.test(f[3]!)) return undefined;
  return { account: f[0]!, queueId: f[1]!, recipient: f[2]!, url: f[3]! };
}

/*
 * webhook-signing.ts — Standard Webhooks signatures (standardwebhooks.com,
 * "Signature scheme"): the secret is `whsec_<base64 key>`; each request
 * carries `webhook-id` (the same on every retry of one batch),
 * `webhook-timestamp` (Unix seconds of this attempt) and
 * `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`.
 * Receivers verify with any Standard Webhooks library or the README snippet.
 * Side effects: none (randomness for new secrets and ids).
 */
import { createHmac, randomBytes } from 'node:crypto';

const SECRET_PREFIX = 'whsec_';
/** 32 random bytes: the HMAC-SHA256 block's worth of key material. */
const SECRET_BYTES = 32;

export function newWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64');
}

/** An id for one batch (message), unique and stable across retries. */
export function newWebhookMessageId(): string {
  return `msg_${randomBytes(12).toString('base64url')}`;
}

export function signatureHeaders(secret: string, id: string, timestampSeconds: number, body: string): Record<string, string> {
  const key = Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64');
  const sig = createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64');
  return { 'webhook-id': id, 'webhook-timestamp': String(timestampSeconds), 'webhook-signature': `v1,${sig}` };
}

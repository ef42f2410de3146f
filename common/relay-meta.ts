/*
 * relay-meta.ts — what a queue record must carry to be relayed to the next
 * SMTP hop. Shared by the forwarder's spool records and the engine's delivery
 * copies, which are relayed by different loops but keep the same facts: the
 * envelope, the recipients still to accept, and the last error for status
 * pages and expiry reasons.
 *
 * Side effects: none (types only).
 */
import type { SmtpReply } from './smtp-client.js';
import type { Envelope } from './smtp-intake.js';

export interface RelayMeta {
  envelope: Envelope;
  /** Recipients not yet accepted by the next hop (shrinks on partial acceptance). */
  pending: string[];
  lastError?: (SmtpReply & { at: number; relay?: string | undefined }) | undefined;
}

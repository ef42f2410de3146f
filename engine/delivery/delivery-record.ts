/*
 * delivery-record.ts — one rewrapped copy on the delivery queue: exactly one
 * recipient, its own queue id (events are per copy), the return path to use
 * (VERP), and what events about it must carry.
 */
import type { Stream } from '../../common/config.js';
import type { RelayMeta } from '../../common/relay-meta.js';

/**
 * The original sender's RFC 3461 parameters for this copy's recipient; present
 * when this copy reports to its sender (see dsn-notices.ts: the message came
 * through a forwarder or its client gave DSN parameters), absent otherwise.
 */
export interface CopyDsn {
  /** NOTIFY of this recipient (upper case); absent: none given (FAILURE,DELAY). */
  notify?: string[] | undefined;
  /** ORCPT of this recipient (`rfc822;addr`). */
  orcpt?: string | undefined;
  ret?: 'FULL' | 'HDRS' | undefined;
  envid?: string | undefined;
}

export interface DeliveryMeta extends RelayMeta {
  /** The intake message this copy came from. */
  intakeId: string;
  account: string;
  /** The one recipient of this copy (also `envelope.rcptTo[0]` and `pending`). */
  recipient: string;
  /** The customer's original envelope sender (the envelope's mailFrom becomes the VERP return path). */
  sender: string;
  messageId?: string | undefined;
  stream: Stream;
  tag?: string | undefined;
  metadata?: Record<string, string> | undefined;
  /** See CopyDsn. */
  dsn?: CopyDsn | undefined;
  /** A "delayed" DSN was considered for this copy (sent if NOTIFY asked): never a second one. */
  delayNotified?: boolean | undefined;
  /** Delivery attempts that got an answer or failed (the lease count also counts lane overflow). */
  tries?: number | undefined;
  /**
   * The body from this offset on is the intake message's bytes as the listener checked them
   * (IntakeMeta.cleanLines: nothing to dot-stuff), behind the copy's own header: delivery scans
   * only the header and the byte after it (common/smtp-session.ts TransactionEnvelope.cleanFrom).
   */
  cleanFrom?: number | undefined;
}

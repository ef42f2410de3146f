/*
 * delivery-record.ts — one rewrapped copy on the delivery queue: exactly one
 * recipient, its own queue id (events are per copy), the return path to use
 * (VERP), and what events about it must carry.
 */
import type { Stream } from '../../common/config.js';
import type { RelayMeta } from '../../common/relay-meta.js';

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
  /** Delivery attempts that got an answer or failed (the lease count also counts lane overflow). */
  tries?: number | undefined;
}

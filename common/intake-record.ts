/*
 * intake-record.ts — what the listener records with each message it puts on the
 * engine's intake queue: the envelope (client IP, TLS state, auth identity
 * included) and the customer account the connection belongs to. Shared because
 * the listener writes it and the engine reads it.
 */
import type { Envelope } from './smtp-intake.js';

export interface IntakeMeta {
  envelope: Envelope;
  account: string;
  /**
   * A forwarder relayed it (the listener saw its X-Postino-Spool-Id): the engine
   * sends the envelope sender DSNs even when the application gave no NOTIFY
   * (engine/delivery/dsn-notices.ts).
   */
  forwarded?: boolean;
  /**
   * The listener's DATA check found no `{{` anywhere in the message (absent: found one, or
   * not looked): the rewrap then knows without reading that a part whose raw bytes are its
   * text holds no merge tag (engine/rewrap/context.ts mayContain; issue #17).
   */
  noDoubleBrace?: true;
  /**
   * The listener's DATA check found no bare CR or LF and no line that starts with a dot: the
   * message's bytes go out again exactly as they are, and a copy that sends them unchanged
   * after its own header need not be scanned for dot-stuffing past it (DeliveryMeta.cleanFrom).
   */
  cleanLines?: true;
  /**
   * Set by the rewrap as it commits copies in batches: the envelope position of the
   * next recipient to rewrap; an attempt after a crash resumes there (engine/rewrap/worker.ts).
   */
  resumeAt?: number;
}

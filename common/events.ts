/*
 * events.ts — the event vocabulary of the DataExporter feed (DESIGN.md, Events).
 *
 * One JSON object per event with a strictly increasing `seq`. The engine writes
 * events in the same LevelDB batch as the state change they describe
 * (engine/events/event-log.ts), so the feed never shows an outcome that did not happen
 * and never misses one that did.
 */

export type EventType =
  | 'accepted'
  | 'scheduled'
  | 'suppressed'
  | 'delivered'
  | 'deferred'
  | 'bounced'
  | 'complained'
  | 'unsubscribed'
  | 'opened'
  | 'clicked'
  | 'rejected'
  | 'expired';

export interface SmtpDetail {
  code: number;
  enhanced: string;
  response: string;
}

export interface PostinoEvent {
  seq: number;
  id: string;
  type: EventType;
  at: string;
  account: string;
  messageId?: string | undefined;
  queueId?: string | undefined;
  recipient?: string | undefined;
  sender?: string | undefined;
  tag?: string | undefined;
  metadata?: Record<string, string> | undefined;
  smtp?: SmtpDetail | undefined;
  /** bounced: RFC 3463 status class. */
  bounce?: { class: 'hard' | 'soft'; status: string } | undefined;
  /** clicked: the original URL. */
  url?: string | undefined;
  /** deferred/suppressed/rejected/expired: why, in words. */
  reason?: string | undefined;
  /** deferred: when the next attempt is due (ISO time). */
  nextAttemptAt?: string | undefined;
  /** deferred: the back-pressure rule that applied, if any. */
  rule?: string | undefined;
  relay?: string | undefined;
}

/** What a caller supplies; the log assigns seq, id and (unless given) at. */
export type EventInput = Omit<PostinoEvent, 'seq' | 'id' | 'at'> & { at?: string };

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
  | 'expired'
  | 'failed'
  | 'unclassified'
  /** An account's allowlist, AUTH users, sender domains or quotas changed (API, CLI or reload). */
  | 'account.changed'
  /** A recipient was deleted on a privacy request; `recipient` is its pseudonym (engine/recipients/erase.ts). */
  | 'recipient.deleted'
  | 'paused'
  | 'resumed'
  | 'webhook.disabled';

export interface SmtpDetail {
  code: number;
  enhanced: string;
  response: string;
}

/**
 * The tag of Postino's own notices to an account's people (engine/feedback/notifications.ts). Their
 * events are in the feed, but they are not the account's sending: they count in no statistic, so
 * neither the dashboard's figures nor the reputation brake's rates move with them.
 */
export const NOTIFY_TAG = 'postino-notification';

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
  /**
   * bounced: the class (hard: the address is gone; soft: this message or this moment;
   * block: the receiver refused the sender — policy, reputation, spam — and the
   * recipient is never suppressed for it) and the RFC 3463 status.
   */
  bounce?: { class: 'hard' | 'soft' | 'block'; status: string; source?: 'smtp' | 'dsn' } | undefined;
  /** clicked: the original URL. */
  url?: string | undefined;
  /** opened/clicked: made by a machine (privacy proxy prefetch, link scanner), not a person. */
  machine?: boolean | undefined;
  /** opened: the first open of this copy (false for repeats); clicked by a person: their first click in this copy. */
  first?: boolean | undefined;
  /** opened/clicked: the client's class (e.g. "apple-mpp", "scanner", "browser", "mail-client"). */
  userAgent?: string | undefined;
  /** unsubscribed: how (one-click POST, the confirmation page, a mailto). */
  via?: 'one-click' | 'page' | 'mailto' | undefined;
  /** unsubscribed: the list it applies to ('' = the whole account). */
  list?: string | undefined;
  /**
   * bounced (from a DSN), complained, unclassified, unsubscribed by mail: the report that
   * caused it — its id on the feedback queue, its format, who sent it; `stored` names the kept
   * copy of a report that could not be read.
   */
  report?: { id: string; format: string; reportingMta?: string | undefined; feedbackType?: string | undefined; stored?: string | undefined } | undefined;
  /** suppressed by a feedback event: true when this event put the address on the suppression list. */
  suppressedNow?: boolean | undefined;
  /** deferred/suppressed/rejected/expired/failed: why, in words. */
  reason?: string | undefined;
  /** deferred: when the next attempt is due (ISO time). */
  nextAttemptAt?: string | undefined;
  /** deferred: the back-pressure rule that applied, if any. */
  rule?: string | undefined;
  relay?: string | undefined;
  /** The intake queue id (the one in the listener's `250 queued as`) of the message this copy came from. */
  intakeId?: string | undefined;
  /** transactional | bulk (X-Postino-Stream), for statistics per stream. */
  stream?: 'transactional' | 'bulk' | undefined;
  /** paused/resumed by the reputation brake: the rates that decided it, over how many messages. */
  figures?: { stream?: string | undefined; window: string; sent: number; complaintRate: number; hardBounceRate: number; blockRate: number } | undefined;
  /** account.changed: who made it ("node" = the node key, "key:<id>" = an account key, "reload" = the config file). */
  actor?: string | undefined;
  /** account.changed: what changed, with the whole value before and after (user names only, never hashes). */
  change?: AccountChange | undefined;
}

/** The parts of an account the API and CLI change, and `config` for a reload of the file. */
export type AccountPart = 'networks' | 'users' | 'senderDomains' | 'quotas' | 'config';

export interface AccountChange {
  part: AccountPart;
  action: 'add' | 'remove' | 'set' | 'reload';
  /** add/remove: the item (a CIDR, a user name, a domain). */
  item?: string | undefined;
  /** Forced past the broad-network check (--force). */
  forced?: boolean | undefined;
  before: unknown;
  after: unknown;
}

/** What a caller supplies; the log assigns seq, id and (unless given) at. */
export type EventInput = Omit<PostinoEvent, 'seq' | 'id' | 'at'> & { at?: string };

/*
 * context.ts — what the rewrap steps share: the message being rewrapped
 * (its envelope, its MIME structure as byte offsets, its control headers) and
 * each per-recipient copy being built, plus the closed set of step outcomes.
 *
 * The pipeline (pipeline.ts) is Postal's shape: an ordered array of small
 * named steps, each returning one of `next | suppressed | rejected`.
 * Side effects: none here; `MessageContext.text` reads the body source.
 */
import type { Readable } from 'node:stream';
import type { ControlLimits } from '../../common/control-headers.js';
import type { AccountEngineConfig, Stream } from '../../common/config.js';
import type { KeyRing } from '../../common/signing-keys.js';
import type { CopyIndex } from '../feedback/copy-index.js';
import type { BatchOp } from '../../common/store.js';
import { getHeader, type HeaderField } from '../../common/mime-header.js';
import type { Envelope } from '../../common/smtp-intake.js';
import type { BodySource } from './body-source.js';
import type { DkimKey } from './dkim-keys.js';
import type { MimeLimits, MimePart } from './mime-scan.js';
import { decodeText } from './mime-text.js';
import { partMayContain, rawNeedles } from './part-probe.js';
import type { RecipientDb, RecipientRecord } from '../recipient-db.js';
import type { SuppressionList } from '../suppression.js';

/** The closed vocabulary of a step's result. */
export type StepOutcome =
  | { kind: 'next' }
  /** This recipient gets no copy (a `suppressed` event says why). */
  | { kind: 'suppressed'; reason: string }
  /** The whole message is refused (a `rejected` event says why); nothing is delivered. */
  | { kind: 'rejected'; reason: string };

export const NEXT: StepOutcome = Object.freeze({ kind: 'next' });

/**
 * A part up to this size is read whole when a step asks what it holds
 * (`MessageContext.mayContain`): searched as bytes when it has no transfer
 * encoding, else decoded (cheap, and the text is at hand if the step then
 * changes it). A larger one is probed as a stream (part-probe.ts), so a
 * 10 MB text body with nothing to change is never a 10 MB string (issue #17).
 * 256 KiB: the size the queue keeps in memory anyway (durable-queue.ts).
 */
export const WHOLE_PART_PROBE_MAX_BYTES = 256 * 1024;

/** What the message asks for through its control headers (ours, or another relay's mapped onto ours). */
export interface Controls {
  stream: Stream;
  list?: string | undefined;
  tag?: string | undefined;
  metadata: Record<string, string>;
  track: { opens: boolean; clicks: boolean };
  footer: boolean;
  /** Merge fields for `{{name}}` tags. */
  vars: Record<string, string>;
  /** Literal per-recipient substitutions (SendGrid `sub`): text → values by envelope recipient order. */
  substitutions: Record<string, string[]>;
  /** The raw send date, when one was given (schedule.ts parses it). */
  sendAtText?: string | undefined;
  /** Already parsed send time (X-SMTPAPI send_at is a Unix time). */
  sendAt?: number | undefined;
}

/** Settings the steps read: the account's, resolved against the global `engine` section. */
export interface RewrapSettings {
  accountId: string;
  account: AccountEngineConfig;
  hostname: string;
  publicUrl: string;
  bounceDomain: string | null;
  bounceLocalPart: string;
  /** Local part of the List-Unsubscribe mailto at the bounce domain (feedback.unsubscribeLocalPart). */
  unsubscribeLocalPart: string;
  passthroughHeaders: readonly string[];
  /** Signs VERP, unsubscribe and tracking tokens (common/signing-keys.ts). */
  keys: KeyRing;
  /** Open/click tokens expire then (seconds since the epoch from the copy's creation); null = never. */
  trackingLinkTtlSeconds: number | null;
  /** engine.mimeNestingLimit and engine.mimeMaxParts: past them the message is rejected, never walked. */
  mimeLimits: MimeLimits;
  dkim: DkimKey | undefined;
  /** Range limits of the control headers (common/control-headers.ts); the defaults when absent. */
  controlLimits?: ControlLimits;
}

/** Services the steps use (injected, so tests use real instances on a temporary store). */
export interface RewrapServices {
  suppression: SuppressionList;
  recipients: RecipientDb;
  copies: CopyIndex;
}

export interface MessageContextInit {
  intakeId: string;
  envelope: Envelope;
  source: BodySource;
  mime: MimePart;
  /** Every part of `mime`, in order (mime-scan.ts walkParts). */
  parts: readonly MimePart[];
  settings: RewrapSettings;
  services: RewrapServices;
  now: number;
  /** The listener's DATA check found no `{{` in the message (IntakeMeta.noDoubleBrace). */
  noDoubleBrace?: boolean;
}

export class MessageContext {
  readonly intakeId: string;
  readonly envelope: Envelope;
  readonly source: BodySource;
  readonly mime: MimePart;
  readonly parts: readonly MimePart[];
  readonly settings: RewrapSettings;
  readonly services: RewrapServices;
  readonly now: number;
  readonly noDoubleBrace: boolean;
  controls: Controls;
  /** When the copies become due (schedule.ts); now unless scheduled. */
  due: number;
  /** Recipient database entries of the envelope recipients (lower-cased domain). */
  recipientRecords = new Map<string, RecipientRecord>();
  /** Ops committed with the move (recipient database updates). */
  readonly extraOps: BatchOp[] = [];
  private readonly texts = new Map<number, Promise<string>>();
  private readonly probes = new Map<string, Promise<boolean>>();

  constructor(o: MessageContextInit) {
    this.intakeId = o.intakeId;
    this.envelope = o.envelope;
    this.source = o.source;
    this.mime = o.mime;
    this.parts = o.parts;
    this.settings = o.settings;
    this.services = o.services;
    this.now = o.now;
    this.noDoubleBrace = o.noDoubleBrace ?? false;
    const a = o.settings.account;
    this.controls = { stream: a.stream, metadata: {}, track: { opens: a.track.opens, clicks: a.track.clicks }, footer: a.footer.enabled, vars: {}, substitutions: {} };
    this.due = o.now;
  }

  get headers(): readonly HeaderField[] {
    return this.mime.headers;
  }

  /**
   * The text parts a footer, merge fields or tracking may change: text/plain
   * and text/html leaves that are not attachments (no attachment disposition,
   * no file name) and not inside a message/rfc822 part.
   */
  get bodyParts(): MimePart[] {
    this.body ??= this.parts.filter(
      (p) =>
        p.children.length === 0 &&
        (p.type === 'text/plain' || p.type === 'text/html') &&
        p.disposition !== 'attachment' &&
        !p.params.name &&
        !/filename/i.test(getHeader(p.headers, 'content-disposition') ?? ''),
    );
    return this.body;
  }
  private body: MimePart[] | undefined;

  /** The first body part of a type: where a header/footer and the open pixel go. */
  firstBodyPart(type: 'text/plain' | 'text/html'): MimePart | undefined {
    return this.bodyParts.find((p) => p.type === type);
  }

  /** Decoded text of a part, read from the source once per message. */
  text(part: MimePart): Promise<string> {
    let t = this.texts.get(part.index);
    if (!t) {
      t = this.source.read(part.bodyStart, part.bodyEnd).then((raw) => decodeText(part, raw));
      this.texts.set(part.index, t);
    }
    return t;
  }

  /**
   * False when the decoded text of a part surely holds none of `needles`
   * (ASCII strings such as `{{`); once per message and part. A part already
   * read is looked at as text; a small one as bytes when it has no transfer
   * encoding (part-probe.ts rawNeedles), else as text; a large one is
   * streamed, never held whole (part-probe.ts). True means "read it": the
   * step then takes `text`.
   * A needle with `{{` in a message the listener saw none in is not looked for
   * in a part whose raw bytes are its text (rawNeedles answers for it): a
   * 1 MB plain-text part was read once more only to find no merge tag, 3% of
   * the hosted node's CPU at 1 MB (issue #17).
   */
  mayContain(part: MimePart, allNeedles: readonly string[]): Promise<boolean> {
    const needles = this.noDoubleBrace && rawNeedles(part, allNeedles) !== undefined ? allNeedles.filter((n) => !n.includes('{{')) : allNeedles;
    const small = part.bodyEnd - part.bodyStart <= WHOLE_PART_PROBE_MAX_BYTES;
    const bytes = small ? rawNeedles(part, needles) : undefined;
    if (this.texts.has(part.index) || (small && !bytes)) return this.text(part).then((text) => needles.some((n) => n !== '' && text.includes(n)));
    const key = `${part.index}\0${needles.join('\0')}`;
    let p = this.probes.get(key);
    if (!p) {
      if (bytes) p = bytes.length === 0 ? Promise.resolve(false) : this.source.read(part.bodyStart, part.bodyEnd).then((raw) => bytes.some((b) => raw.includes(b)));
      else p = partMayContain(this.source, part, needles);
      this.probes.set(key, p);
    }
    return p;
  }
}

export class Copy {
  /** The envelope sender of this copy (VERP return path, or the customer's sender). */
  mailFrom: string;
  /** Top-level header fields of this copy, in order. */
  headers: HeaderField[];
  /** Merge fields for this recipient. */
  vars: Record<string, string> = {};
  /** The one-click unsubscribe URL, when list-unsubscribe.ts made one. */
  unsubscribeUrl: string | undefined;
  /** Changed text of body parts, by part index. */
  readonly texts = new Map<number, string>();
  /** The finished copy (render.ts), then signed (dkim.ts). */
  body: Readable | undefined;
  /** What render.ts wrote: the header block (with its empty line) and a factory for the body bytes (DKIM reads them twice). */
  rendered: { header: Buffer; body: () => Readable } | undefined;
  /**
   * The finished copy as `head` followed by the intake message from `tailFrom` to its end, when
   * that is all it is (no body part changed): render.ts sets it, a step that changes `body`
   * after render keeps it true (dkim.ts) or clears it. The worker then lets the delivery record
   * refer to the intake's bytes instead of writing them again (durable-queue.ts, handed-over bodies).
   */
  shared: { head: Buffer; tailFrom: number } | undefined;

  readonly queueId: string;
  readonly recipient: string;
  /** Position of the recipient in the envelope (per-recipient substitutions). */
  readonly position: number;

  constructor(msg: MessageContext, o: { queueId: string; recipient: string; position: number }) {
    this.queueId = o.queueId;
    this.recipient = o.recipient;
    this.position = o.position;
    this.mailFrom = msg.envelope.mailFrom;
    this.headers = [...msg.headers];
  }

  /** Current text of a body part: this copy's change, else the original. */
  async text(msg: MessageContext, part: MimePart): Promise<string> {
    return this.texts.get(part.index) ?? (await msg.text(part));
  }

  removeHeaders(match: (lower: string) => boolean): void {
    this.headers = this.headers.filter((f) => !match(f.lower));
  }
}

export interface MessageStep {
  name: string;
  run(msg: MessageContext): StepOutcome | Promise<StepOutcome>;
}

export interface CopyStep {
  name: string;
  run(copy: Copy, msg: MessageContext): StepOutcome | Promise<StepOutcome>;
}

/*
 * strict-data.ts — checks a DATA payload (after smtp-server removed the dot
 * stuffing) for what a strict receiver must refuse:
 *   - a bare LF or a bare CR: RFC 5321 2.3.8 allows CR and LF only as CRLF.
 *     Receivers that accept `\n.\n` as end of data while another hop does not
 *     are what makes SMTP smuggling work (Postfix: smtpd_forbid_bare_newline);
 *   - a line longer than 998 octets (RFC 5322 2.1.1, RFC 5321 4.5.3.1.6).
 * smtp-server itself ends DATA only at `<CRLF>.<CRLF>`, so a smuggled
 * `\n.\n` stays inside this payload, where this check finds it.
 *
 * With `allowBareNewlines` only the line length is checked: the forwarder takes
 * an app's bare LF (nodemailer writes every line ending as CRLF when it relays,
 * as Postfix's smtp client does), but a line the hosted side will refuse must be
 * refused to the app at once, not bounced later.
 *
 * The first violation is kept in `violation`; from then on the data is dropped
 * (not passed on) but still consumed, so the session reaches the real end of
 * DATA and can answer `550 5.6.0` and stay usable.
 *
 * Side effects: none.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { PostinoError } from './errors.js';

/** RFC 5322 2.1.1: "Each line of characters MUST be no more than 998 characters ... excluding the CRLF." */
export const MAX_LINE_OCTETS = 998;

const CR = 0x0d;
const LF = 0x0a;

export interface StrictDataOptions {
  /** Accept bare CR/LF (they still end a line for the length count). */
  allowBareNewlines?: boolean;
}

export class StrictDataCheck extends Transform {
  violation: PostinoError | undefined;
  private lastWasCr = false;
  private lineLength = 0;
  private readonly allowBare: boolean;

  constructor(opts: StrictDataOptions = {}) {
    super();
    this.allowBare = opts.allowBareNewlines ?? false;
  }

  private fail(e: PostinoError): void {
    this.violation = e;
  }

  private scan(chunk: Buffer): void {
    let lastWasCr = this.lastWasCr;
    let lineLength = this.lineLength;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (lastWasCr) {
        lastWasCr = false;
        lineLength = 0;
        if (b === LF) continue;
        if (!this.allowBare) return this.fail(new PostinoError('BARE_NEWLINE', 'Bare CR in message data: lines must end with CRLF'));
      }
      if (b === CR) {
        lastWasCr = true;
      } else if (b === LF) {
        if (!this.allowBare) return this.fail(new PostinoError('BARE_NEWLINE', 'Bare LF in message data: lines must end with CRLF'));
        lineLength = 0;
      } else if (++lineLength > MAX_LINE_OCTETS) {
        return this.fail(new PostinoError('LINE_TOO_LONG', `Message line longer than ${MAX_LINE_OCTETS} octets`));
      }
    }
    this.lastWasCr = lastWasCr;
    this.lineLength = lineLength;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (!this.violation) this.scan(chunk);
    cb(null, this.violation ? undefined : chunk);
  }

  override _flush(cb: TransformCallback): void {
    // smtp-server keeps the CRLF before "." in the payload, so a CR here has no LF.
    if (!this.violation && this.lastWasCr && !this.allowBare) this.fail(new PostinoError('BARE_NEWLINE', 'Bare CR in message data: lines must end with CRLF'));
    cb();
  }
}

/*
 * errors.ts — the closed set of errors Postino raises, each carrying the SMTP
 * reply (basic code + RFC 3463 enhanced status) or HTTP status it becomes.
 *
 * Standards: RFC 5321 4.2 (reply codes), RFC 3463 (enhanced status codes).
 * Side effects: none. The edge (an SMTP session, an HTTP route) turns these
 * into wire replies; nothing upstream matches on message strings.
 */

export type ErrorCode =
  | 'NOT_ALLOWED_NETWORK'
  | 'TOO_MANY_CONNECTIONS'
  | 'MESSAGE_TOO_BIG'
  | 'TOO_MANY_RECIPIENTS'
  | 'SPOOL_WRITE_FAILED'
  | 'SHUTTING_DOWN'
  | 'INTAKE_PAUSED'
  | 'BAD_MESSAGE'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'BAD_REQUEST'
  | 'TLS_REQUIRED'
  | 'AUTH_REQUIRED'
  | 'DUPLICATE_IN_PROGRESS'
  | 'IN_FLIGHT'
  | 'TOO_MANY_CONNECTIONS_FROM_IP'
  | 'TOO_MANY_ERRORS'
  | 'SESSION_TIME_LIMIT'
  | 'AUTH_FAILED'
  | 'AUTH_RATE_LIMITED'
  | 'AUTH_NEEDS_TLS'
  | 'SENDER_NOT_ALLOWED'
  | 'QUOTA_EXCEEDED'
  | 'BARE_NEWLINE'
  | 'LINE_TOO_LONG'
  | 'UNKNOWN_PARAMETER'
  | 'UTF8_NOT_ENABLED'
  | 'SHARED_STATE_UNAVAILABLE';

interface ErrorSpec {
  smtp: number;
  enhanced: string;
  http: number;
}

const SPECS: Record<ErrorCode, ErrorSpec> = {
  NOT_ALLOWED_NETWORK: { smtp: 554, enhanced: '5.7.1', http: 403 },
  TOO_MANY_CONNECTIONS: { smtp: 421, enhanced: '4.7.0', http: 503 },
  MESSAGE_TOO_BIG: { smtp: 552, enhanced: '5.3.4', http: 413 },
  TOO_MANY_RECIPIENTS: { smtp: 452, enhanced: '4.5.3', http: 400 },
  SPOOL_WRITE_FAILED: { smtp: 451, enhanced: '4.3.0', http: 503 },
  SHUTTING_DOWN: { smtp: 421, enhanced: '4.3.2', http: 503 },
  INTAKE_PAUSED: { smtp: 421, enhanced: '4.3.2', http: 503 },
  BAD_MESSAGE: { smtp: 550, enhanced: '5.6.0', http: 400 },
  UNAUTHORIZED: { smtp: 535, enhanced: '5.7.8', http: 401 },
  /** An API key acting beyond its account. */
  FORBIDDEN: { smtp: 550, enhanced: '5.7.1', http: 403 },
  NOT_FOUND: { smtp: 550, enhanced: '5.1.1', http: 404 },
  BAD_REQUEST: { smtp: 501, enhanced: '5.5.4', http: 400 },
  TLS_REQUIRED: { smtp: 530, enhanced: '5.7.0', http: 403 },
  AUTH_REQUIRED: { smtp: 530, enhanced: '5.7.0', http: 401 },
  /** Same X-Postino-Spool-Id arriving while the first copy is being written (spool-id.ts). */
  DUPLICATE_IN_PROGRESS: { smtp: 451, enhanced: '4.4.0', http: 409 },
  /** Admin action on a message being relayed right now. */
  IN_FLIGHT: { smtp: 451, enhanced: '4.3.0', http: 409 },
  TOO_MANY_CONNECTIONS_FROM_IP: { smtp: 421, enhanced: '4.7.0', http: 503 },
  TOO_MANY_ERRORS: { smtp: 421, enhanced: '4.7.0', http: 400 },
  SESSION_TIME_LIMIT: { smtp: 421, enhanced: '4.4.2', http: 408 },
  AUTH_FAILED: { smtp: 535, enhanced: '5.7.8', http: 401 },
  AUTH_RATE_LIMITED: { smtp: 454, enhanced: '4.7.0', http: 429 },
  // RFC 3207 4: AUTH in clear is refused until TLS; 538 is RFC 4954's "encryption required".
  AUTH_NEEDS_TLS: { smtp: 538, enhanced: '5.7.11', http: 403 },
  SENDER_NOT_ALLOWED: { smtp: 550, enhanced: '5.7.1', http: 403 },
  // 452 4.5.3 is temporary: the forwarder keeps the message and retries after the quota window.
  QUOTA_EXCEEDED: { smtp: 452, enhanced: '4.5.3', http: 429 },
  // SMTP smuggling defence (Postfix smtpd_forbid_bare_newline): RFC 5321 2.3.8 allows only CRLF.
  BARE_NEWLINE: { smtp: 550, enhanced: '5.6.0', http: 400 },
  // RFC 5322 2.1.1 / RFC 5321 4.5.3.1.6: a line is at most 998 octets plus CRLF.
  LINE_TOO_LONG: { smtp: 550, enhanced: '5.6.0', http: 400 },
  // RFC 5321 4.1.1.11 / 4.2.2: a MAIL or RCPT parameter of an extension we do not offer.
  UNKNOWN_PARAMETER: { smtp: 555, enhanced: '5.5.4', http: 400 },
  // RFC 6531 3.5 / RFC 6533: a UTF-8 address in a transaction that did not say SMTPUTF8.
  UTF8_NOT_ENABLED: { smtp: 553, enhanced: '5.6.7', http: 400 },
  // The shared-state database (storage.postgres) did not answer: temporary; the message waits
  // in the local queue (common/dead-letter.ts releases it) and an API call may be repeated.
  SHARED_STATE_UNAVAILABLE: { smtp: 451, enhanced: '4.3.0', http: 503 },
};

export class PostinoError extends Error {
  readonly smtpCode: number;
  readonly enhanced: string;
  readonly httpStatus: number;

  constructor(
    readonly code: ErrorCode,
    readonly reason: string,
  ) {
    const spec = SPECS[code];
    // smtp-server writes `${responseCode} ${message}`; we hide its own guessed
    // enhanced codes (hideENHANCEDSTATUSCODES) and put the right one here.
    super(`${spec.enhanced} ${reason}`);
    this.smtpCode = spec.smtp;
    this.enhanced = spec.enhanced;
    this.httpStatus = spec.http;
  }

  /** smtp-server reads the reply code from this property. */
  get responseCode(): number {
    return this.smtpCode;
  }
}

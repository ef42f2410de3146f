/*
 * received-header.ts — the trace header each hop adds (RFC 5321 4.4).
 *
 *   Received: from <helo> ([<ip>])
 *   	by <host> (Postino) with ESMTPS id <queue id>
 *   	for <rcpt>; <date>
 * "with" uses the RFC 3848 protocol types (ESMTP, ESMTPS, ESMTPA, ESMTPSA);
 * "for" is given only for a single recipient, so a copy never names the others.
 */
import type { Envelope } from '../../common/smtp-intake.js';

/** HELO names come from the client: keep only what a domain or address literal may contain. */
function clean(text: string): string {
  return text.replace(/[^A-Za-z0-9.\-:[\]_]/g, '').slice(0, 255) || 'unknown';
}

export function rfc5322Date(d: Date): string {
  // toUTCString gives "Wed, 25 Nov 2026 10:00:00 GMT"; RFC 5322 prefers a numeric zone.
  return d.toUTCString().replace(/GMT$/, '+0000');
}

export function receivedHeader(env: Envelope, host: string, queueId: string, at: Date): string {
  const proto = `ESMTP${env.tls ? 'S' : ''}${env.authUser ? 'A' : ''}`;
  const forPart = env.rcptTo.length === 1 ? `\r\n\tfor <${env.rcptTo[0]}>` : '';
  return `Received: from ${clean(env.heloName)} ([${clean(env.clientAddress)}])\r\n\tby ${host} (Postino) with ${proto} id ${queueId}${forPart};\r\n\t${rfc5322Date(at)}\r\n`;
}

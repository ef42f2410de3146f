/*
 * send-at.ts — the date of a scheduled send (`X-Postino-Send-At`, and the
 * Mailgun `X-Mailgun-Deliver-By` it is mapped from).
 *
 * Accepted: RFC 3339 date-time (`2026-11-25T10:00:00Z`, `…+01:00`, fractions)
 * and RFC 5322 3.3 dates (`Wed, 25 Nov 2026 10:00:00 +0000`, day name and
 * seconds optional). Anything else is unparseable: control-headers.ts (the
 * validator shared by the listener and the rewrap) refuses it, and a time out
 * of range, with 550 5.6.0.
 * Side effects: none.
 */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const RFC5322 = /^((Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s*)?\d{1,2}\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{4}\s+\d{2}:\d{2}(:\d{2})?\s+([+-]\d{4}|UT|GMT|[ECMP][SD]T)(\s*\(.*\))?$/i;

/** Milliseconds since the epoch, or undefined when the text is not one of the two formats. */
export function parseSendAt(text: string): number | undefined {
  const t = text.trim();
  if (!RFC3339.test(t) && !RFC5322.test(t)) return undefined;
  const ms = Date.parse(t.replace(/\s*\(.*\)$/, ''));
  return Number.isFinite(ms) ? ms : undefined;
}


/*
 * header-compat.ts (message step) — the control headers of other relays,
 * mapped onto ours so a customer switching to Postino changes no code.
 * Runs before parse-controls.ts: our own X-Postino-* headers win.
 *
 *   X-SMTPAPI (SendGrid, MailUp) JSON: category → tag (several joined by ","),
 *       unique_args → metadata, send_at (Unix seconds) → send time,
 *       sub → per-recipient literal substitutions (by envelope order)
 *   X-SES-CONFIGURATION-SET → metadata.ses_configuration_set
 *   X-SES-MESSAGE-TAGS "n1=v1, n2=v2" → metadata
 *   X-PM-Tag → tag; X-PM-Metadata-<key> → metadata.<key>;
 *       X-PM-Message-Stream "broadcast" → bulk
 *   X-Mailgun-Tag → tag; X-Mailgun-Variables JSON → merge vars;
 *       X-Mailgun-Deliver-By → send time
 * header-hygiene.ts strips all of them (COMPAT_HEADERS).
 * Malformed values are skipped here (nothing thrown); parse-controls.ts then runs
 * the validator the listener uses (common/control-headers.ts), which rejects them.
 */
import { fieldValue } from '../../../common/mime-header.js';
import { NEXT, type MessageContext, type MessageStep, type StepOutcome } from '../context.js';

/** Lower-case names (or prefixes ending in '-') removed before delivery. */
export const COMPAT_HEADERS: readonly string[] = [
  'x-smtpapi',
  'x-ses-configuration-set',
  'x-ses-message-tags',
  'x-pm-tag',
  'x-pm-metadata-',
  'x-pm-message-stream',
  'x-mailgun-tag',
  'x-mailgun-variables',
  'x-mailgun-deliver-by',
];

export function isCompatHeader(lower: string): boolean {
  return COMPAT_HEADERS.some((h) => (h.endsWith('-') ? lower.startsWith(h) : lower === h));
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `k=v<sep>k2=v2` into `into` (X-Postino-Metadata uses `;`, X-SES-MESSAGE-TAGS `,`); pairs without `=` are skipped. */
export function addPairs(into: Record<string, string>, value: string, sep: string): void {
  for (const pair of value.split(sep)) {
    const eq = pair.indexOf('=');
    if (eq > 0) into[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
}

export function scalar(v: unknown): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

export const headerCompat: MessageStep = {
  name: 'header-compat',
  run(msg: MessageContext): StepOutcome {
    const c = msg.controls;
    const tags: string[] = [];
    for (const f of msg.headers) {
      if (!isCompatHeader(f.lower)) continue;
      const value = fieldValue(f);
      switch (f.lower) {
        case 'x-smtpapi': {
          const j = parseJson(value);
          if (!j) break;
          const cat = j.category;
          if (Array.isArray(cat)) tags.push(...cat.map(scalar));
          else if (cat !== undefined) tags.push(scalar(cat));
          const args = j.unique_args ?? j.custom_args;
          if (args && typeof args === 'object') for (const [k, v] of Object.entries(args)) c.metadata[k] = scalar(v);
          if (typeof j.send_at === 'number' && Number.isFinite(j.send_at)) c.sendAt = j.send_at * 1000;
          if (j.sub && typeof j.sub === 'object')
            for (const [k, v] of Object.entries(j.sub as Record<string, unknown>)) if (Array.isArray(v)) c.substitutions[k] = v.map(scalar);
          break;
        }
        case 'x-ses-configuration-set':
          c.metadata.ses_configuration_set = value;
          break;
        case 'x-ses-message-tags':
          addPairs(c.metadata, value, ',');
          break;
        case 'x-pm-tag':
        case 'x-mailgun-tag':
          tags.push(value);
          break;
        case 'x-pm-message-stream':
          if (value.toLowerCase() === 'broadcast') c.stream = 'bulk';
          break;
        case 'x-mailgun-variables': {
          const j = parseJson(value);
          if (j) for (const [k, v] of Object.entries(j)) c.vars[k] = scalar(v);
          break;
        }
        case 'x-mailgun-deliver-by':
          c.sendAtText = value;
          break;
        default:
          if (f.lower.startsWith('x-pm-metadata-')) c.metadata[f.name.slice('x-pm-metadata-'.length)] = value;
      }
    }
    if (tags.length) c.tag = tags.filter(Boolean).join(',');
    return NEXT;
  },
};

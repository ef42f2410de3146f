/*
 * control-headers.ts — the one validator of per-message control headers
 * (DESIGN.md "Per-message control headers": X-Postino-*, and the shims
 * X-SMTPAPI, X-SES-*, X-PM-*, X-Mailgun-*), shared by the listener, which
 * refuses a bad value at the end of DATA with `550 5.6.0 <reason>`, and the
 * rewrap (header-compat.ts), which rejects the message with the same reason
 * if one still arrives (config changed, a record from before this check).
 * What passes here cannot make a later step throw: every send time is a
 * finite date between 2000-01-01 and now + engine.maxScheduleDays, every JSON
 * header an object with the shape its reader expects, every value bounded.
 *
 * Checked:
 *   X-Postino-Send-At, X-Mailgun-Deliver-By  RFC 3339 / RFC 5322 date (send-at.ts), in range
 *   X-SMTPAPI            JSON object; send_at a Unix time in range; category a string or
 *                        array of strings; unique_args/custom_args flat; sub arrays of scalars
 *   X-Postino-Vars, X-Mailgun-Variables   JSON object, flat: strings and numbers
 *   X-Postino-Stream     transactional | bulk        X-Postino-Footer  on | off
 *   X-Postino-Track      opens, clicks | none        X-Postino-List    ≤ MAX_NAME_CHARS
 *   X-Postino-Metadata, X-SES-Message-Tags  k=v pairs, at most MAX_ENTRIES
 *   every value          ≤ MAX_VALUE_CHARS (JSON headers ≤ MAX_JSON_CHARS)
 *
 * Config: engine.maxScheduleDays (30). Side effects: none.
 */
import { fieldValue, type HeaderField } from './mime-header.js';
import { parseSendAt } from './send-at.js';

/** A tag, a metadata value or a merge field longer than this is not an identifier but a body. */
export const MAX_VALUE_CHARS = 1000;
/** JSON control headers (vars, X-SMTPAPI with per-recipient `sub` lists) may be larger. */
export const MAX_JSON_CHARS = 64 * 1024;
/** Keys of vars/metadata and list names: they end up in tokens and keys. */
export const MAX_NAME_CHARS = 100;
/** Entries of one vars/metadata object: each is copied into every event. */
export const MAX_ENTRIES = 100;
/** 2000-01-01T00:00:00Z: a send time before it is a unit mistake (ms for s), not a date. */
export const MIN_SEND_AT_MS = Date.UTC(2000, 0, 1);
const DAY_MS = 86_400_000;

export interface ControlLimits {
  /** A send time further ahead than this many days is refused (engine.maxScheduleDays). */
  maxScheduleDays: number;
}

export const DEFAULT_CONTROL_LIMITS: ControlLimits = { maxScheduleDays: 30 };

/** Lower-case names of the control headers that carry JSON. */
const JSON_HEADERS = new Set(['x-smtpapi', 'x-postino-vars', 'x-mailgun-variables']);

function isControl(lower: string): boolean {
  return lower.startsWith('x-postino-') || lower === 'x-smtpapi' || lower.startsWith('x-ses-') || lower.startsWith('x-pm-') || lower.startsWith('x-mailgun-');
}

/** Why a send time is out of range, or undefined. */
export function sendAtRangeProblem(ms: number, now: number, limits: ControlLimits): string | undefined {
  if (!Number.isFinite(ms) || ms < MIN_SEND_AT_MS) return 'is before 2000-01-01';
  if (ms > now + limits.maxScheduleDays * DAY_MS) return `is more than ${limits.maxScheduleDays} days ahead (engine.maxScheduleDays)`;
  return undefined;
}

function parseJsonObject(text: string): Record<string, unknown> | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'is not valid JSON';
  }
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : 'is not a JSON object';
}

function scalarProblem(v: unknown, maxChars = MAX_VALUE_CHARS): string | undefined {
  if (typeof v === 'string') return v.length > maxChars ? `has a value longer than ${maxChars} characters` : undefined;
  if (typeof v === 'number') return Number.isFinite(v) ? undefined : 'has a number that is not finite';
  return 'is not a flat object of strings and numbers';
}

/**
 * A flat object of strings/numbers with bounded keys, values and entries. Metadata values
 * (copied into every event) are identifiers: MAX_VALUE_CHARS; merge values go into the body
 * (an address block, an order summary) and are bounded only by their header's size.
 */
function flatProblem(o: unknown, maxValueChars = MAX_VALUE_CHARS): string | undefined {
  if (!o || typeof o !== 'object' || Array.isArray(o)) return 'is not a flat object of strings and numbers';
  const entries = Object.entries(o);
  if (entries.length > MAX_ENTRIES) return `has more than ${MAX_ENTRIES} entries`;
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > MAX_NAME_CHARS) return `has a key that is empty or longer than ${MAX_NAME_CHARS} characters`;
    const p = scalarProblem(v, maxValueChars);
    if (p) return p;
  }
  return undefined;
}

function pairsProblem(value: string, sep: string): string | undefined {
  const pairs = value.split(sep).filter((p) => p.trim());
  if (pairs.length > MAX_ENTRIES) return `has more than ${MAX_ENTRIES} entries`;
  for (const p of pairs) if (!/^\s*[^=\s][^=]*=/.test(p)) return `"${p.trim().slice(0, 40)}" is not key=value`;
  return undefined;
}

function smtpApiProblem(j: Record<string, unknown>, now: number, limits: ControlLimits): string | undefined {
  if (j.send_at !== undefined) {
    if (typeof j.send_at !== 'number' || !Number.isInteger(j.send_at)) return 'send_at is not a Unix time in seconds';
    const p = sendAtRangeProblem(j.send_at * 1000, now, limits);
    if (p) return `send_at ${p}`;
  }
  const cat = j.category;
  if (cat !== undefined) {
    const cats = Array.isArray(cat) ? cat : [cat];
    if (cats.length > MAX_ENTRIES || cats.some((c) => typeof c !== 'string' || c.length > MAX_VALUE_CHARS)) return 'category is not a string or a list of strings';
  }
  for (const key of ['unique_args', 'custom_args'] as const) {
    const p = j[key] === undefined ? undefined : flatProblem(j[key]);
    if (p) return `${key} ${p}`;
  }
  if (j.sub !== undefined) {
    if (!j.sub || typeof j.sub !== 'object' || Array.isArray(j.sub)) return 'sub is not an object of lists';
    for (const list of Object.values(j.sub as Record<string, unknown>)) {
      if (!Array.isArray(list) || list.some((v) => scalarProblem(v, MAX_JSON_CHARS) !== undefined)) return 'sub is not an object of lists of strings and numbers';
    }
  }
  return undefined;
}

/** Why one control header's value is bad, or undefined. */
function fieldProblem(lower: string, value: string, now: number, limits: ControlLimits): string | undefined {
  const max = JSON_HEADERS.has(lower) ? MAX_JSON_CHARS : MAX_VALUE_CHARS;
  if (value.length > max) return `is longer than ${max} characters`;
  switch (lower) {
    case 'x-postino-send-at':
    case 'x-mailgun-deliver-by': {
      const ms = parseSendAt(value);
      if (ms === undefined) return `cannot parse "${value.slice(0, 80)}" as an RFC 3339 or RFC 5322 date`;
      return sendAtRangeProblem(ms, now, limits);
    }
    case 'x-smtpapi': {
      const j = parseJsonObject(value);
      return typeof j === 'string' ? j : smtpApiProblem(j, now, limits);
    }
    case 'x-postino-vars':
    case 'x-mailgun-variables': {
      const j = parseJsonObject(value);
      return typeof j === 'string' ? j : flatProblem(j, MAX_JSON_CHARS);
    }
    case 'x-postino-stream':
      return /^(transactional|bulk)$/i.test(value) ? undefined : `unknown stream "${value.slice(0, 40)}" (transactional or bulk)`;
    case 'x-postino-footer':
      return /^(on|off)$/i.test(value) ? undefined : `"${value.slice(0, 40)}" is not on or off`;
    case 'x-postino-track': {
      const words = value.toLowerCase().split(/[\s,]+/).filter(Boolean);
      const bad = words.find((w) => w !== 'opens' && w !== 'clicks' && w !== 'none');
      return bad === undefined && words.length > 0 ? undefined : `"${(bad ?? value).slice(0, 40)}" is not opens, clicks or none`;
    }
    case 'x-postino-list':
      return value.length > MAX_NAME_CHARS ? `is longer than ${MAX_NAME_CHARS} characters` : undefined;
    case 'x-postino-metadata':
      return pairsProblem(value, ';');
    case 'x-ses-message-tags':
      return pairsProblem(value, ',');
    default:
      return undefined;
  }
}

/**
 * The reason to refuse a message for its control headers (`<Header>: <why>`),
 * or undefined when every one is well-formed and in range.
 */
export function controlHeaderProblem(headers: readonly HeaderField[], now: number, limits: ControlLimits = DEFAULT_CONTROL_LIMITS): string | undefined {
  for (const f of headers) {
    if (!isControl(f.lower)) continue;
    const problem = fieldProblem(f.lower, fieldValue(f).trim(), now, limits);
    if (problem) return `${f.name}: ${problem}`;
  }
  return undefined;
}

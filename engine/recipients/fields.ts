/*
 * fields.ts — what a merge field may be called and hold, checked wherever
 * fields come in (PUT/PATCH, CSV and NDJSON imports) so a bad one is refused
 * with its reason, never stored or silently dropped.
 *
 * Names: a letter, then letters, digits or `_`, at most 64 characters: a
 * subset of what a merge tag can name (rewrap/steps/merge-fields.ts), so every
 * stored field can be used as `{{name}}`. Side effects: none.
 */
import { PostinoError } from '../../common/errors.js';

export const FIELD_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
/** A merge value is a name, a city, a coupon code: 4 KiB is generous and bounds an entry. */
export const MAX_FIELD_VALUE = 4096;
/** Fields per recipient: bounds an entry (and the export's columns). */
export const MAX_FIELDS = 100;

export function fieldNameProblem(name: string): string | undefined {
  if (FIELD_NAME.test(name)) return undefined;
  return `field name "${name.length > 80 ? `${name.slice(0, 80)}…` : name}" is not a letter followed by up to 63 letters, digits or _`;
}

export function fieldValueProblem(name: string, value: unknown, nullable: boolean): string | undefined {
  if (value === null && nullable) return undefined;
  if (typeof value !== 'string') return `field "${name}" is not a string${nullable ? ' (or null to remove it)' : ''}`;
  if (value.length > MAX_FIELD_VALUE) return `field "${name}" is longer than ${MAX_FIELD_VALUE} characters`;
  return undefined;
}

/** The first problem of a set of fields (a flat object of strings; null removes when `nullable`), or undefined. */
export function fieldsProblem(fields: unknown, nullable: boolean): string | undefined {
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) return 'fields is a flat JSON object of strings';
  const entries = Object.entries(fields as Record<string, unknown>);
  if (entries.length > MAX_FIELDS) return `more than ${MAX_FIELDS} fields`;
  for (const [k, v] of entries) {
    const p = fieldNameProblem(k) ?? fieldValueProblem(k, v, nullable);
    if (p) return p;
  }
  return undefined;
}

/** The body's `fields`, checked; a PostinoError (400) naming the problem otherwise. */
export function checkedFields<N extends boolean>(body: unknown, nullable: N): Record<string, N extends true ? string | null : string> {
  const fields = (body as { fields?: unknown } | null)?.fields;
  const p = fieldsProblem(fields, nullable);
  if (p) throw new PostinoError('BAD_REQUEST', p);
  return fields as Record<string, N extends true ? string | null : string>;
}

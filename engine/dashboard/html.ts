/*
 * html.ts — the dashboard's template: a tagged template that escapes every
 * interpolated value, so a recipient, a subject or a bounce reply can never
 * become markup. Only values wrapped by `trusted()` (or produced by `html`
 * itself) pass through unchanged; arrays are rendered item by item, and
 * null, undefined and booleans render as nothing (for `${cond && html`…`}`).
 *
 * Escaping covers text and double-quoted attribute values (& < > " '); URLs
 * built from data go through `url()` (encodeURIComponent) before they land in
 * an attribute. Side effects: none.
 */

/** Markup known to be safe: the output of `html` or a constant wrapped by `trusted`. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

export type Part = Html | string | number | boolean | null | undefined | readonly Part[];

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** Marks a string as markup. Only for constants and the output of other templates, never for data. */
export function trusted(markup: string): Html {
  return new Html(markup);
}

function render(v: Part): string {
  if (v instanceof Html) return v.value;
  if (v === null || v === undefined || typeof v === 'boolean') return '';
  if (Array.isArray(v)) return (v as readonly Part[]).map(render).join('');
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

/** A path with its query: values are percent-encoded, empty ones left out. */
export function url(path: string, query: Record<string, string | number | undefined | null> = {}): string {
  const q = Object.entries(query)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  return q ? `${path}?${q}` : path;
}

/*
 * redact.ts — the one place that hides secrets before a value is logged,
 * stored or answered.
 *
 * A relay URL carries its login (`smtp://user:pass@host:port`, the only way to
 * log in to a listener account that has users). The password may be logged,
 * written to a spool record (`lastError.relay`), shown by an admin API or
 * echoed by a config error only as `***`: `smtp://user:***@host:port`. The
 * user name stays (it says which login was used); the password never does.
 *
 *   redactUrl(url)       one URL (an unparseable one through redactUrlsIn)
 *   redactUrlsIn(text)   every `scheme://user:pass@` inside free text (error messages)
 *   redactConfig(value)  a deep copy of a config object with every URL redacted and
 *                        every password hash replaced (for logs of a config)
 *
 * Side effects: none.
 */

export const REDACTED = '***';

/** `scheme://` then the userinfo up to the last `@` before the host (RFC 3986 3.2.1: `@` ends it). */
const USERINFO_IN_TEXT = /([a-z][a-z0-9+.-]*:\/\/)([^\s/?#]*)@/gi;

/** `smtp://user:pass@host` → `smtp://user:***@host`; a URL without a password comes back as given. */
export function redactUrl(u: string): string {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    return redactUrlsIn(u);
  }
  if (url.password === '') return u;
  url.password = REDACTED;
  return url.toString();
}

/** Every URL login inside a text (an error message quoting a URL): the password goes, the user stays. */
export function redactUrlsIn(text: string): string {
  return text.replace(USERINFO_IN_TEXT, (_m, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon === -1 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:${REDACTED}@`;
  });
}

/** Keys whose values are secrets (or enough to guess one offline) wherever they appear in a config. */
const SECRET_KEYS = /^(password|passwordHash|pass|secret|token|apiKey)$/i;

/** A deep copy fit for a log line: URLs redacted, secret-named values replaced. */
export function redactConfig<T>(value: T): T {
  const walk = (v: unknown, key: string): unknown => {
    if (typeof v === 'string') return SECRET_KEYS.test(key) ? REDACTED : redactUrlsIn(v);
    if (Array.isArray(v)) return v.map((x) => walk(x, key));
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]));
    return v;
  };
  return walk(value, '') as T;
}

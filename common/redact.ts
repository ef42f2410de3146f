/*
 * redact.ts — the one place that hides a URL's password before it is logged,
 * stored or answered.
 *
 * A relay URL carries its login (`smtp://user:pass@host:port`, the only way to
 * log in to a listener account that has users). The password may be logged,
 * written to a spool record (`lastError.relay`), shown by an admin API or
 * echoed by a config error only as `***`: `smtp://user:***@host:port`. The
 * user name stays (it says which login was used); the password never does.
 *
 *   redactUrl(url)       one URL (an unparseable one through redactUrlsIn)
 *   redactUrlsIn(text)   every `scheme://user:pass@` inside free text (error messages,
 *                        config problems)
 * Nothing logs a whole config today; one that must should pass its URLs through here.
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

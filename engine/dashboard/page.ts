/*
 * page.ts — the frame every dashboard page shares: the headers (a
 * Content-Security-Policy that allows no inline script and no framing, no
 * caching, no sniffing, no referrer), the layout with its navigation, the
 * forms' hidden CSRF field, and small formatters.
 *
 * Side effects: none.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { html, type Html, type Part } from './html.js';
import type { Session } from './sessions.js';

/**
 * Scripts and styles only from our own /assets (no inline script, no eval), forms post
 * only to us, frames only our own sandboxed body routes, and nobody may frame us.
 */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * A captured HTML body, shown inside a `sandbox` iframe (no scripts, unique origin): no
 * script, no request of any kind (remote images and fonts would be tracking pixels and leaks),
 * inline styles allowed because mail is styled that way, framed only by our own pages.
 */
export const BODY_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; form-action 'none'; frame-ancestors 'self'; base-uri 'none'; sandbox";

export const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export type Section = 'overview' | 'messages' | 'suppressions' | 'captured' | 'statistics' | 'webhooks';

export interface LayoutInput {
  title: string;
  session: Session | undefined;
  active?: Section | undefined;
  /** The captured-mail section is listed only when the capture folder exists and the viewer is the operator. */
  captured?: boolean;
  body: Part;
}

export function csrfField(session: Session): Html {
  return html`<input type="hidden" name="_csrf" value="${session.csrf}">`;
}

export function layout(p: LayoutInput): Html {
  const link = (s: Section, href: string, label: string): Html => html`<a href="${href}"${p.active === s ? html` aria-current="page"` : ''}>${label}</a>`;
  const nav = p.session
    ? html`<nav>
  ${link('overview', '/', 'Overview')}
  ${link('messages', '/messages', 'Messages')}
  ${link('suppressions', '/suppressions', 'Suppressions')}
  ${link('statistics', '/statistics', 'Statistics')}
  ${link('webhooks', '/webhooks', 'Webhooks')}
  ${p.captured && link('captured', '/captured', 'Captured mail')}
  <form method="post" action="/logout" class="logout">${csrfField(p.session)}<span class="who">${p.session.label}</span> <button type="submit">Log out</button></form>
</nav>`
    : '';
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${p.title} · Postino</title>
<link rel="stylesheet" href="/assets/dashboard.css">
<script src="/assets/dashboard.js" defer></script>
</head>
<body>
<header><strong class="brand">Postino</strong>${nav}</header>
<main>
<h1>${p.title}</h1>
${p.body}
</main>
</body>
</html>
`;
}

export function sendHtml(reply: FastifyReply, markup: Html, status = 200): FastifyReply {
  return reply.code(status).type('text/html; charset=utf-8').send(markup.value);
}

/** A redirect after a form post (303: the browser follows with GET). */
export function seeOther(reply: FastifyReply, to: string): FastifyReply {
  return reply.code(303).header('location', to).send();
}

/** Cookie values by name (RFC 6265 4.2: `name=value; name2=value2`). */
export function cookies(req: FastifyRequest): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

/** The string value of a form or query field, trimmed; undefined when empty or absent. */
export function field(source: unknown, name: string): string | undefined {
  const v = (source as Record<string, unknown> | null | undefined)?.[name];
  const s = typeof v === 'string' ? v.trim() : undefined;
  return s ? s : undefined;
}

export function seconds(s: number | null): string {
  if (s === null) return 'unknown (nothing sent in the last minute)';
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** ISO time without the milliseconds and zone letter, for tables. */
export function when(iso: string | undefined): string {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '') : '';
}

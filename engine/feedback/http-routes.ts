/*
 * http-routes.ts — the links we write into every copy, on the engine's HTTP
 * port (8080), public (no API key: recipients and their mail clients call them):
 *
 *   GET  /u/<token>   a small confirmation page: the address partly masked, one button
 *   POST /u/<token>   unsubscribe; RFC 8058 one-click (`List-Unsubscribe=One-Click`, sent by
 *                     the mailbox provider without a page) or the page's button; 200 both
 *                     times, idempotent, one `unsubscribed` event
 *   GET  /t/o/<token> a 1×1 transparent GIF, never cached; records `opened`
 *   GET  /t/c/<token> 302 to the URL sealed in the token; records `clicked`
 *
 * A bad, truncated, tampered, expired or foreign token gets 400 with a plain
 * page: never a redirect, never an event (guarantee 5). The click target comes
 * only from the token, so no URL that was not in the message is reachable.
 * Standards: RFC 8058 (one-click), RFC 2369 (List-Unsubscribe).
 * Side effects: LevelDB writes through the recorder.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { splitAddress } from '../../common/address.js';
import type { Logger } from '../../common/log.js';
import type { KeyRing } from '../../common/signing-keys.js';
import { verifyClickToken, verifyOpenToken, verifyUnsubscribeToken } from '../../common/tokens.js';
import type { FeedbackRecorder } from './recorder.js';

/** The smallest transparent GIF (43 bytes). */
const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
/** A form post is a few bytes; anything large is not ours to read. */
const FORM_BODY_LIMIT = 16 * 1024;
/** Pages of our own: no script at all, styles inline, forms post only to us. */
const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const NO_CACHE = { 'cache-control': 'no-store, no-cache, must-revalidate, private, max-age=0', pragma: 'no-cache', expires: '0' };

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `a•••a@example.com`: enough for the person to recognise it, not enough to harvest. */
export function maskAddress(address: string): string {
  const parts = splitAddress(address);
  const local = parts?.local ?? address;
  const domain = parts ? `@${parts.domain}` : '';
  const shown = local.length <= 2 ? local.slice(0, 1) : `${local.slice(0, 1)}${'•'.repeat(Math.min(local.length - 2, 5))}${local.slice(-1)}`;
  return shown + domain;
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}button{font:inherit;padding:.6rem 1.4rem;border:0;border-radius:.4rem;background:#b3261e;color:#fff;cursor:pointer}
.addr{font-family:ui-monospace,monospace}</style></head>
<body>${body}</body></html>
`;
}

function sendPage(reply: FastifyReply, status: number, title: string, body: string): FastifyReply {
  return reply.code(status).headers({ 'content-type': 'text/html; charset=utf-8', 'content-security-policy': PAGE_CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', ...NO_CACHE }).send(page(title, body));
}

function invalid(reply: FastifyReply): FastifyReply {
  return sendPage(reply, 400, 'Link not valid', '<h1>This link is not valid</h1><p>It may have been cut short or changed on its way. Nothing was done.</p>');
}

/** RFC 8058 3.1: the one-click POST body is `List-Unsubscribe=One-Click`, form-encoded or multipart. */
function isOneClick(body: unknown): boolean {
  return typeof body === 'string' && /(^|&|\r\n\r\n|")List-Unsubscribe(=|"\r\n\r\n)One-Click/i.test(body);
}

export interface FeedbackRouteOptions {
  keys: KeyRing;
  recorder: FeedbackRecorder;
  log: Logger;
}

export function registerFeedbackRoutes(app: FastifyInstance, o: FeedbackRouteOptions): void {
  const pub = { config: { public: true } };
  void app.register(async (scope) => {
    // Mailbox providers post form-encoded or multipart bodies; read them as text, small.
    scope.addContentTypeParser(['application/x-www-form-urlencoded', 'multipart/form-data'], { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT }, (_req, body, done) => done(null, body));

    scope.get<{ Params: { token: string } }>('/u/:token', pub, async (req, reply) => {
      const claim = verifyUnsubscribeToken(o.keys, req.params.token);
      if (!claim) return invalid(reply);
      const what = claim.list ? `the list <strong>${escapeHtml(claim.list)}</strong>` : 'all mail from this sender';
      return sendPage(
        reply,
        200,
        'Unsubscribe',
        `<h1>Unsubscribe</h1><p>Stop sending ${what} to <span class="addr">${escapeHtml(maskAddress(claim.recipient))}</span>?</p>
<form method="post"><input type="hidden" name="confirm" value="page"><button type="submit">Unsubscribe</button></form>`,
      );
    });

    scope.post<{ Params: { token: string } }>('/u/:token', pub, async (req, reply) => {
      const claim = verifyUnsubscribeToken(o.keys, req.params.token);
      if (!claim) return invalid(reply);
      // Any POST to a valid link unsubscribes (RFC 8058 clients send the one-click body; our page sends confirm=page).
      const oneClick = isOneClick(req.body) || !/confirm=page/.test(String(req.body ?? ''));
      await o.recorder.unsubscribe(claim, oneClick ? 'one-click' : 'page');
      if (oneClick) return reply.code(200).headers(NO_CACHE).type('text/plain; charset=utf-8').send('unsubscribed\n');
      return sendPage(reply, 200, 'Unsubscribed', `<h1>You are unsubscribed</h1><p><span class="addr">${escapeHtml(maskAddress(claim.recipient))}</span> will not receive ${claim.list ? `the list <strong>${escapeHtml(claim.list)}</strong>` : 'mail from this sender'} any more.</p>`);
    });

    scope.get<{ Params: { token: string } }>('/t/o/:token', pub, async (req, reply) => {
      const claim = verifyOpenToken(o.keys, req.params.token);
      if (!claim) return invalid(reply);
      // The pixel is served even when recording fails: the reader must not see a broken image.
      await o.recorder.open(claim, req.headers['user-agent']).catch((err: unknown) => o.log.error({ err, queueId: claim.queueId }, 'open not recorded'));
      return reply.code(200).headers({ 'content-type': 'image/gif', ...NO_CACHE }).send(PIXEL);
    });

    scope.get<{ Params: { token: string } }>('/t/c/:token', pub, async (req, reply) => {
      const claim = verifyClickToken(o.keys, req.params.token);
      if (!claim) return invalid(reply);
      await o.recorder.click(claim, req.headers['user-agent']).catch((err: unknown) => o.log.error({ err, queueId: claim.queueId }, 'click not recorded'));
      return reply.code(302).headers({ location: claim.url, 'referrer-policy': 'no-referrer', ...NO_CACHE }).send();
    });
  });
}

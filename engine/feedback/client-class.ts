/*
 * client-class.ts — who fetched a pixel or followed a link: a person's mail
 * client or browser, or a machine acting before (or instead of) the person:
 * Apple Mail Privacy Protection prefetching every image, security gateways
 * and link scanners (Safe Links, Proofpoint, Mimecast, Barracuda…) following
 * every link, HTTP libraries and bots. Machine events keep being recorded,
 * with `machine: true`, so reports can leave them out and nothing is lost.
 *
 * Standards: none (user agents are conventions); the patterns are the ones
 * these clients publish or are widely observed with. A click that comes
 * within feedback.scannerClickSeconds of the copy leaving is a scanner's
 * whatever its user agent says (scanners imitate browsers).
 * Side effects: none.
 */

export type ClientClass = 'apple-mpp' | 'image-proxy' | 'scanner' | 'bot' | 'mail-client' | 'browser' | 'unknown';

export interface ClientInfo {
  class: ClientClass;
  machine: boolean;
}

/** Apple's proxy sends exactly this, with no platform or engine tokens. */
const APPLE_MPP = /^Mozilla\/5\.0$/;
/** Proxies that fetch images when the person opens the message (a real open). */
const IMAGE_PROXY = /GoogleImageProxy|YahooMailProxy|ggpht\.com/i;
const SCANNER = /barracuda|proofpoint|urldefense|mimecast|safelinks|symantec|messagelabs|trend ?micro|forcepoint|fireeye|sophos|ironport|cisco|zscaler|check ?point|bitdefender|trustwave|spamtitan|hornetsecurity/i;
const BOT = /bot\b|bot\/|crawler|spider|slurp|preview|python|curl\/|wget|go-http-client|java\/|okhttp|headless|phantomjs|axios|node-fetch|undici|libwww|httpclient|scrapy|postman/i;
const MAIL_CLIENT = /outlook|ms-office|microsoft office|thunderbird|apple ?mail|airmail|spark|k-9|fairemail|mailbird|em client/i;
const BROWSER = /^Mozilla\/5\.0 \(/;

export function classifyClient(userAgent: string | undefined): ClientInfo {
  const ua = (userAgent ?? '').trim();
  if (!ua) return { class: 'bot', machine: true };
  if (APPLE_MPP.test(ua)) return { class: 'apple-mpp', machine: true };
  if (IMAGE_PROXY.test(ua)) return { class: 'image-proxy', machine: false };
  if (SCANNER.test(ua)) return { class: 'scanner', machine: true };
  if (BOT.test(ua)) return { class: 'bot', machine: true };
  if (MAIL_CLIENT.test(ua)) return { class: 'mail-client', machine: false };
  if (BROWSER.test(ua)) return { class: 'browser', machine: false };
  return { class: 'unknown', machine: false };
}

/** A click this soon after the copy left was made by a scanner, whatever the user agent. */
export function classifyClick(userAgent: string | undefined, sinceDueMs: number, scannerClickMs: number): ClientInfo {
  const c = classifyClient(userAgent);
  if (!c.machine && sinceDueMs >= 0 && sinceDueMs < scannerClickMs) return { class: 'scanner', machine: true };
  return c;
}

/*
 * settings.ts — each account's rewrap settings, resolved once at start
 * against the global `engine` section: public URL (accounts[].engine.publicUrl,
 * else engine.publicUrl, else http://<http.host>:<http.port>), bounce domain,
 * passthrough headers, the token key ring (<data>/secrets/signing-keys) and the
 * DKIM key (read and checked here, so a bad key file stops the start).
 * Side effects: reads secrets and key files.
 */
import type { Config } from '../../common/config.js';
import { FileKeyRing, type KeyRing } from '../../common/signing-keys.js';
import { loadDkimKey } from './dkim-keys.js';
import type { RewrapSettings } from './context.js';

export function resolveRewrapSettings(config: Config, dataDir: string, keys: KeyRing = FileKeyRing.open(dataDir)): Map<string, RewrapSettings> {
  const e = config.engine;
  const httpHost = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host;
  const out = new Map<string, RewrapSettings>();
  for (const a of config.accounts) {
    const publicUrl = (a.engine.publicUrl ?? e.publicUrl ?? `http://${httpHost}:${config.http.port}`).replace(/\/+$/, '');
    out.set(a.id, {
      accountId: a.id,
      account: a.engine,
      hostname: e.hostname,
      publicUrl,
      bounceDomain: a.engine.bounceDomain ?? e.bounceDomain,
      bounceLocalPart: e.bounceLocalPart,
      unsubscribeLocalPart: config.feedback.unsubscribeLocalPart,
      passthroughHeaders: e.passthroughHeaders,
      keys,
      trackingLinkTtlSeconds: e.trackingLinkTtlDays === null ? null : e.trackingLinkTtlDays * 86_400,
      dkim: loadDkimKey(a.engine.dkim),
      controlLimits: { maxScheduleDays: e.maxScheduleDays },
      mimeLimits: { nesting: e.mimeNestingLimit, parts: e.mimeMaxParts },
    });
  }
  return out;
}

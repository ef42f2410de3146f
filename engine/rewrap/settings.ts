/*
 * settings.ts — each account's rewrap settings, resolved once at start
 * against the global `engine` section: public URL (accounts[].engine.publicUrl,
 * else engine.publicUrl, else http://<http.host>:<http.port>), bounce domain,
 * passthrough headers, the signing key (<data>/secrets/signing-key) and the
 * DKIM key (read and checked here, so a bad key file stops the start).
 * Side effects: reads secrets and key files.
 */
import type { Config } from '../../common/config.js';
import { ensureSecret } from '../../common/secrets.js';
import { loadDkimKey } from './dkim-keys.js';
import type { RewrapSettings } from './context.js';

export function resolveRewrapSettings(config: Config, dataDir: string): Map<string, RewrapSettings> {
  const signingKey = ensureSecret(dataDir, 'signing-key');
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
      passthroughHeaders: e.passthroughHeaders,
      signingKey,
      dkim: loadDkimKey(a.engine.dkim),
    });
  }
  return out;
}

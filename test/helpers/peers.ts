/*
 * Debian peers the tests talk to (swaks, Postfix's tools). A peer that is
 * missing, or present without the capability a test uses (swaks without
 * Net::SSLeay exists but cannot STARTTLS): the test is skipped visibly —
 * unless POSTINO_REQUIRE_PEERS=1 (CI), where it fails.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

/** Something a test needs from a peer beyond its binary; `missing()` gives the reason or undefined. */
export interface PeerCapability {
  missing(): string | undefined;
}

function unavailable(reason: string): string {
  if (process.env.POSTINO_REQUIRE_PEERS === '1') throw new Error(`POSTINO_REQUIRE_PEERS=1: ${reason}`);
  console.log(`SKIP: ${reason}`);
  return reason;
}

/** Returns undefined when `path` is there with every capability, else a skip reason; throws under POSTINO_REQUIRE_PEERS=1. */
export function requirePeer(name: string, path: string, capabilities: readonly PeerCapability[] = []): string | undefined {
  if (!fs.existsSync(path)) return unavailable(`${name} not installed (${path}); apt-get install ${name} (or run .ci/install-peers)`);
  for (const c of capabilities) {
    const reason = c.missing();
    if (reason) return unavailable(`${name}: ${reason} (run .ci/install-peers)`);
  }
  return undefined;
}

/**
 * A feature as `swaks --support` names it ("TLS", "Basic AUTH"): swaks prints
 * `=== <feature> supported` or `*** <feature> not available: requires <module>`.
 */
export function swaksSupports(swaks: string, feature: string): PeerCapability {
  return {
    missing() {
      const r = spawnSync(swaks, ['--support'], { encoding: 'utf8', timeout: 10_000 });
      const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
      if (out.includes(`=== ${feature} supported`)) return undefined;
      const why = out.split('\n').find((l) => l.startsWith(`*** ${feature} not available`));
      return why ? why.replace(/^\*\*\* /, '') : `"${feature}" not listed by swaks --support`;
    },
  };
}

/*
 * Debian peers the tests talk to (swaks, Postfix's tools). Missing: the test is
 * skipped visibly — unless POSTINO_REQUIRE_PEERS=1 (CI), where it fails.
 */
import fs from 'node:fs';

/** Returns undefined when `path` is there, else a skip reason; throws under POSTINO_REQUIRE_PEERS=1. */
export function requirePeer(name: string, path: string): string | undefined {
  if (fs.existsSync(path)) return undefined;
  const reason = `${name} not installed (${path}); apt-get install ${name}`;
  if (process.env.POSTINO_REQUIRE_PEERS === '1') throw new Error(`POSTINO_REQUIRE_PEERS=1: ${reason}`);
  console.log(`SKIP: ${reason}`);
  return reason;
}

/*
 * Debian peers (swaks, postfix) the tests talk to. Missing: a visible skip;
 * under POSTINO_REQUIRE_PEERS=1 (CI) a failure instead.
 */
import fs from 'node:fs';

/** Undefined when `path` exists; otherwise a skip reason (or throws when peers are required). */
export function requirePeer(name: string, path: string): string | undefined {
  if (fs.existsSync(path)) return undefined;
  const reason = `${name} not installed (${path}); apt-get install ${name}`;
  if (process.env.POSTINO_REQUIRE_PEERS === '1') throw new Error(`POSTINO_REQUIRE_PEERS=1: ${reason}`);
  console.log(`# SKIP ${reason}`);
  return reason;
}

/*
 * postfix-peer.ts — the benchmarks compare against Debian's postfix package
 * (smtp-source, smtp-sink and a Postfix instance of their own). When it is
 * missing and we are root on a Debian machine, it is installed with
 * .ci/install-peers (the same step CI uses), as the forwarder issue asks of
 * the bench script; otherwise the benchmark is skipped with the reason.
 *
 * Side effects: may run apt-get (root only).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../test/helpers/postino.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NEEDED = ['/usr/sbin/postfix', '/usr/sbin/smtp-source', '/usr/sbin/smtp-sink'];

function missingBins(): string[] {
  return NEEDED.filter((b) => !fs.existsSync(b));
}

/** Undefined when Postfix is ready for a benchmark; else why it is not. */
function ensurePostfix(): string | undefined {
  if (missingBins().length === 0) return process.getuid?.() === 0 ? undefined : "postfix's master must start as root";
  if (process.getuid?.() !== 0) return `${missingBins().join(', ')} not found, and installing the postfix package needs root`;
  console.log('  installing Debian postfix with .ci/install-peers …');
  const r = spawnSync(path.join(ROOT, '.ci', 'install-peers'), { stdio: 'inherit' });
  if (r.status !== 0) return `.ci/install-peers failed (exit ${r.status ?? r.signal})`;
  const still = missingBins();
  return still.length ? `${still.join(', ')} still missing after install` : undefined;
}

/** True when Postfix is ready; otherwise prints why the benchmark is skipped. */
export function postfixReady(): boolean {
  const missing = ensurePostfix();
  if (missing) console.log(`  skipped: ${missing}`);
  return !missing;
}

/** A temp folder that Postfix's daemons (user postfix) can reach, or undefined when the benchmark is skipped. */
export function postfixBenchDir(name: string): string | undefined {
  if (!postfixReady()) return undefined;
  const dir = tempDir(`bench-${name}`);
  fs.chmodSync(dir, 0o755);
  return dir;
}

/*
 * secrets-fingerprint.ts — a short hash of the secrets every hosted node of one
 * installation must share: the token key ring (a VERP bounce, a click or an
 * unsubscribe reaches whichever node the balancer picks, and that node must
 * verify the token another node signed) and the pseudonym key (a deletion
 * made through one node must be recognised by the others). Each node puts it
 * in its heartbeat (engine/nodes/), so `postino hosted status` and the
 * dashboard name a node whose copy differs — a forgotten `keys rotate` on one
 * node, a node set up without copying data/secrets — before its links fail.
 *
 * The hash is of the key lines (id and secret; comments and creation times do
 * not count) and of the pseudonym key: 12 hex characters of SHA-256, enough to
 * tell copies apart, useless for recovering a secret.
 * Side effects: reads two small files under <data>/secrets.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { secretsDir } from './secrets.js';
import { SIGNING_KEYS_FILE } from './signing-keys.js';

const SHARED = [SIGNING_KEYS_FILE, 'pseudonym-key'] as const;

export function secretsFingerprint(dataDir: string): string {
  const h = createHash('sha256');
  for (const name of SHARED) {
    let text = '';
    try {
      text = fs.readFileSync(path.join(secretsDir(dataDir), name), 'utf8');
    } catch {
      // Not made yet: hashed as empty, so it shows as different from a node that has it.
    }
    const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    h.update(`${name}\n${lines.map((l) => l.split(/\s+/).slice(0, 2).join(' ')).join('\n')}\n\0`);
  }
  return h.digest('hex').slice(0, 12);
}

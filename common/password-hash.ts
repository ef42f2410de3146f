/*
 * password-hash.ts — scrypt password hashes for SMTP AUTH users in config.
 *
 * Format: `scrypt$<N>$<r>$<p>$<salt, base64>$<hash, base64>` — the parameters
 * travel with the hash, so they can be raised later without breaking old entries.
 * Defaults N=16384, r=8, p=1 (RFC 7914's interactive-login example; ~16 MiB and
 * a few tens of ms per check, which is also what makes guessing slow).
 * `postino hash-password` prints one; config holds only hashes, never passwords.
 *
 * Side effects: CPU (scrypt runs on libuv's thread pool, not the event loop).
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const KEY_LENGTH = 32;
const DEFAULTS = { N: 16384, r: 8, p: 1 };

function scryptAsync(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

/** 128 * N * r bytes of memory; Node's default maxmem (32 MiB) is too tight for N=16384 with headroom. */
function options(N: number, r: number, p: number): ScryptOptions {
  return { N, r, p, maxmem: 256 * N * r + 1024 * 1024 };
}

export async function hashPassword(password: string, params = DEFAULTS): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, KEY_LENGTH, options(params.N, params.r, params.p));
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** True when `password` matches `encoded`; false for a wrong password or a malformed hash. */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (!N || !r || !p || expected.length === 0) return false;
  const key = await scryptAsync(password, salt, expected.length, options(N, r, p));
  return timingSafeEqual(key, expected);
}

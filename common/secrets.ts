/*
 * secrets.ts — the secrets a node needs, generated on first start.
 *
 * Under <data>/secrets/ (folder 0700, files 0600, never committed):
 *   admin-token    bearer token of the forwarder admin API
 *   api-key        bearer key of the hosted API
 *   pseudonym-key  HMAC key of the stable hash that replaces a deleted recipient's
 *                  address in stored events (engine/recipients/pseudonym.ts)
 *   signing-keys   the key ring of VERP, unsubscribe and tracking tokens (signing-keys.ts)
 *   dev-ca.pem     a development CA (certificate only; its key is discarded)
 *   dev-cert.pem, dev-key.pem   a TLS pair for localhost/127.0.0.1/::1 signed by that CA
 * The CLI reads the same files, so `npx postino forwarder status` works from
 * the repository root without copying a token by hand. A config may instead
 * name an environment variable holding a secret (`forwarder.admin.tokenEnv`,
 * `http.apiKeyEnv`, `forwarder.smtp.auth.users[].passwordEnv`);
 * `postino check-config` reports each one that is unset or shorter than
 * MIN_SECRET_BYTES (secretEnvProblems).
 *
 * Durability: a secret file appears whole or not at all. It is written and
 * fsynced under a temporary name, then hard-linked to its name (which fails if
 * another process created it meanwhile: a secret is never overwritten) and the
 * folder fsynced. So a crash during the first start leaves no secret (the next
 * start makes one), never an empty or cut one; a secret file found shorter than
 * MIN_SECRET_BYTES anyway (copied by hand, truncated on a full disk) is refused
 * at start with an error naming the file, not used as a guessable token.
 *
 * Side effects: creates files on first use; fsyncs them and their folder.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { generate } from 'selfsigned';
import type { Config, ConfigProblem } from './config.js';
import { fsyncPathSync, writeSmallFileSynced } from './fsync.js';

export type SecretName = 'admin-token' | 'api-key' | 'pseudonym-key';

/** Constant-time comparison of a presented secret with the expected one. */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function secretsDir(dataDir: string): string {
  return path.join(dataDir, 'secrets');
}

function ensureDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Whole or not at all, never over an existing file (see the header). */
function writeSecretFile(file: string, content: string): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  writeSmallFileSynced(tmp, content, { exclusive: true });
  try {
    fs.linkSync(tmp, file);
  } catch (e) {
    // EEXIST: another process created it a moment ago; theirs stands.
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  fsyncPathSync(path.dirname(file));
}

/** A secret file's value; throws, naming the file, when it is too short to be one of ours. */
function readSecretFile(file: string): string {
  const value = fs.readFileSync(file, 'utf8').trim();
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < MIN_SECRET_BYTES)
    throw new Error(`${file} holds ${bytes} bytes; a secret needs at least ${MIN_SECRET_BYTES}. Refusing to use it: remove the file to have a new secret generated (and give the new one to whoever used the old)`);
  return value;
}

/** Reads a secret, creating a random one (32 bytes, base64url) on first use. */
export function ensureSecret(dataDir: string, name: SecretName): string {
  const dir = secretsDir(dataDir);
  ensureDir(dir);
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) writeSecretFile(file, randomBytes(32).toString('base64url') + '\n');
  return readSecretFile(file);
}

/** The secret from the named environment variable if configured, else from <data>/secrets. */
export function resolveSecret(dataDir: string, name: SecretName, envName: string | null, env: NodeJS.ProcessEnv): string {
  if (envName) {
    const v = env[envName];
    if (!v) throw new Error(`environment variable ${envName} (for ${name}) is not set`);
    return v;
  }
  return ensureSecret(dataDir, name);
}

/** A secret from the environment is at least as long as the ones generated here: 32 bytes (256 bits). */
export const MIN_SECRET_BYTES = 32;

export interface SecretEnvRef {
  /** Key path of the config key that names the variable. */
  path: string;
  envName: string;
}

/** Every secret the config takes from an environment variable. */
export function secretEnvRefs(config: Config): SecretEnvRef[] {
  const refs: SecretEnvRef[] = [];
  const f = config.forwarder;
  if (f.admin.tokenEnv) refs.push({ path: 'forwarder.admin.tokenEnv', envName: f.admin.tokenEnv });
  f.smtp.auth.users.forEach((u, i) => refs.push({ path: `forwarder.smtp.auth.users.${i}.passwordEnv`, envName: u.passwordEnv }));
  if (config.http.apiKeyEnv) refs.push({ path: 'http.apiKeyEnv', envName: config.http.apiKeyEnv });
  return refs;
}

/** Those secrets that are unset in `env`, or shorter than MIN_SECRET_BYTES, as config problems. */
export function secretEnvProblems(config: Config, env: NodeJS.ProcessEnv): ConfigProblem[] {
  return secretEnvRefs(config).flatMap(({ path: keyPath, envName }): ConfigProblem[] => {
    const v = env[envName];
    if (!v) return [{ path: keyPath, message: `environment variable ${envName} is not set` }];
    const bytes = Buffer.byteLength(v, 'utf8');
    if (bytes < MIN_SECRET_BYTES) return [{ path: keyPath, message: `environment variable ${envName} holds ${bytes} bytes; a secret needs at least ${MIN_SECRET_BYTES}` }];
    return [];
  });
}

/** Reads a secret that must already exist (CLI side); undefined when it does not. */
export function readSecret(dataDir: string, name: SecretName): string | undefined {
  const file = path.join(secretsDir(dataDir), name);
  return fs.existsSync(file) ? readSecretFile(file) : undefined;
}

export interface DevTlsPaths {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export function devTlsPaths(dir: string): DevTlsPaths {
  return { caFile: path.join(dir, 'dev-ca.pem'), certFile: path.join(dir, 'dev-cert.pem'), keyFile: path.join(dir, 'dev-key.pem') };
}

/**
 * Creates a development CA and a localhost server pair signed by it, unless
 * they exist. Valid 2 years; for tests and `postino up` only.
 */
export async function ensureDevTls(dir: string, hostnames: string[] = ['localhost']): Promise<DevTlsPaths> {
  const paths = devTlsPaths(dir);
  ensureDir(dir);
  if (fs.existsSync(paths.caFile) && fs.existsSync(paths.certFile) && fs.existsSync(paths.keyFile)) return paths;
  const notBeforeDate = new Date(Date.now() - 3600_000);
  const notAfterDate = new Date(Date.now() + 2 * 365 * 24 * 3600_000);
  const ca = await generate([{ name: 'commonName', value: 'Postino development CA' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const leaf = await generate([{ name: 'commonName', value: hostnames[0] ?? 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [...hostnames.map((h) => ({ type: 2 as const, value: h })), { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }],
      },
    ],
  });
  // Key first, CA last: a reader that finds dev-ca.pem knows the pair is complete.
  writeSecretFile(paths.keyFile, leaf.private);
  writeSecretFile(paths.certFile, leaf.cert);
  writeSecretFile(paths.caFile, ca.cert);
  return paths;
}

/*
 * dkim-keys.ts — DKIM keys (RFC 6376): generating a pair and its DNS TXT
 * record (`postino dkim keygen <domain>`), and loading an account's key.
 *
 * Keys are RSA 2048 (RFC 8301: at least 1024, 2048 recommended), PKCS#8 PEM.
 * Side effects: keygen writes the private key file (0600); load reads it.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { AccountEngineConfig } from '../../common/config.js';

const RSA_BITS = 2048;
/** DNS TXT character-strings are at most 255 octets (RFC 1035 3.3.14); longer records are split. */
const TXT_STRING_MAX = 255;

export interface DkimKey {
  /** d= ; null = the From domain of each message. */
  domain: string | null;
  selector: string;
  /** Parsed once: handing the signer a PEM string would parse it again for every copy. */
  privateKey: KeyObject;
}

export function loadDkimKey(cfg: AccountEngineConfig['dkim']): DkimKey | undefined {
  if (!cfg.keyFile) return undefined;
  // Fails at start, not on the first message, when the file is not a key.
  const privateKey = createPrivateKey(fs.readFileSync(cfg.keyFile, 'utf8'));
  return { domain: cfg.domain, selector: cfg.selector, privateKey };
}

/** The TXT record value for a public key: `v=DKIM1; k=rsa; p=<base64 SPKI>`. */
export function dkimTxtValue(privateKeyPem: string): string {
  const spki = createPublicKey(privateKeyPem).export({ type: 'spki', format: 'der' });
  return `v=DKIM1; k=rsa; p=${spki.toString('base64')}`;
}

/** A zone-file line, the value split into ≤255-octet strings. */
export function dkimTxtRecord(domain: string, selector: string, privateKeyPem: string): string {
  const value = dkimTxtValue(privateKeyPem);
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += TXT_STRING_MAX) parts.push(`"${value.slice(i, i + TXT_STRING_MAX)}"`);
  return `${selector}._domainkey.${domain}. IN TXT ( ${parts.join(' ')} )`;
}

export interface GeneratedKey {
  keyFile: string;
  privateKey: string;
  record: string;
}

/** Generates a key pair into `dir/<domain>.<selector>.pem` (never overwrites one). */
export function generateDkimKey(dir: string, domain: string, selector: string): GeneratedKey {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(dir, `${domain}.${selector}.pem`);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: RSA_BITS, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  fs.writeFileSync(keyFile, privateKey, { mode: 0o600, flag: 'wx' });
  return { keyFile, privateKey, record: dkimTxtRecord(domain, selector, privateKey) };
}

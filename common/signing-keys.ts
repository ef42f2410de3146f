/*
 * signing-keys.ts — the key ring behind VERP, unsubscribe and tracking tokens
 * (common/tokens.ts), so the signing key can rotate while every link already
 * in a mailbox keeps working (DESIGN.md guarantee 5; `postino keys rotate`).
 *
 * File <data>/secrets/signing-keys (0600), one key per line:
 *   <id> <secret, base64url of 32 random bytes> <created, ISO time>
 * Ids are base36 counters ("1", "2", …). The last line signs; every line
 * verifies, for as long as it stays in the file (an unsubscribe link must work
 * for as long as the message exists, so keys are never dropped by us).
 * A running node re-reads the file on SIGHUP, when a token names an id it
 * does not know yet (at most once a second), and when the file changed (its
 * mtime, looked at no more than every ten seconds): a rotation made by
 * `postino keys rotate` is signing within seconds, with no restart.
 *
 * Side effects: creates the file with one key on first use; `rotateKeys`
 * appends a line (write to a temp file, fsync, rename).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeSmallFileSynced } from './fsync.js';
import { secretsDir } from './secrets.js';

export const SIGNING_KEYS_FILE = 'signing-keys';
/** 256-bit secrets: HMAC-SHA256 and AES-256 take a key of this size. */
const SECRET_BYTES = 32;
/** A token naming an unknown id makes us re-read the file, but not more often than this. */
const RELOAD_MIN_INTERVAL_MS = 1_000;
/** How often the signing side looks whether the file changed (one stat). */
const CHANGE_CHECK_INTERVAL_MS = 10_000;
const LINE = /^([0-9a-z]{1,6}) ([A-Za-z0-9_-]{43}) (\S+)$/;

export interface SigningKey {
  id: string;
  secret: Buffer;
  created: string;
}

/** What tokens need: the key that signs now, and any key by id. */
export interface KeyRing {
  readonly current: SigningKey;
  get(id: string): SigningKey | undefined;
}

export class KeyRingError extends Error {}

function parse(text: string, file: string): SigningKey[] {
  const keys: SigningKey[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const m = LINE.exec(line);
    if (!m) throw new KeyRingError(`${file}:${i + 1}: not "<id> <secret> <created>"`);
    keys.push({ id: m[1]!, secret: Buffer.from(m[2]!, 'base64url'), created: m[3]! });
  });
  if (keys.length === 0) throw new KeyRingError(`${file}: no keys`);
  return keys;
}

function format(keys: readonly SigningKey[]): string {
  return (
    '# Postino token-signing keys: the last line signs, every line verifies. Never delete a line\n' +
    '# while mail signed with it may still be read (unsubscribe links must keep working).\n' +
    keys.map((k) => `${k.id} ${k.secret.toString('base64url')} ${k.created}`).join('\n') +
    '\n'
  );
}

function newKey(id: string, now: Date): SigningKey {
  return { id, secret: randomBytes(SECRET_BYTES), created: now.toISOString() };
}

function writeAtomically(file: string, text: string, exclusive: boolean): void {
  if (exclusive) {
    // Exclusive: two processes starting at once must not each create a different first key.
    try {
      writeSmallFileSynced(file, text, { exclusive: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    return;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeSmallFileSynced(tmp, text);
  fs.renameSync(tmp, file);
}

export function signingKeysPath(dataDir: string): string {
  return path.join(secretsDir(dataDir), SIGNING_KEYS_FILE);
}

/** The ring in <data>/secrets, created with one key on first use. */
export class FileKeyRing implements KeyRing {
  private keys: SigningKey[];
  private lastLoad = 0;
  private lastCheck = 0;
  private mtimeMs = 0;

  private constructor(
    readonly file: string,
    private readonly now: () => number,
  ) {
    this.keys = parse(fs.readFileSync(file, 'utf8'), file);
    this.lastLoad = this.lastCheck = now();
    this.mtimeMs = fs.statSync(file).mtimeMs;
  }

  static open(dataDir: string, now: () => number = Date.now): FileKeyRing {
    const file = signingKeysPath(dataDir);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    if (!fs.existsSync(file)) writeAtomically(file, format([newKey('1', new Date(now()))]), true);
    return new FileKeyRing(file, now);
  }

  get current(): SigningKey {
    const now = this.now();
    if (now - this.lastCheck >= CHANGE_CHECK_INTERVAL_MS) {
      this.lastCheck = now;
      try {
        if (fs.statSync(this.file).mtimeMs !== this.mtimeMs) this.reload();
      } catch {
        // The file is gone for a moment (an editor's rename): keep signing with what we have.
      }
    }
    return this.keys[this.keys.length - 1]!;
  }

  get ids(): string[] {
    return this.keys.map((k) => k.id);
  }

  get(id: string): SigningKey | undefined {
    const k = this.keys.find((x) => x.id === id);
    if (k || this.now() - this.lastLoad < RELOAD_MIN_INTERVAL_MS) return k;
    this.reload();
    return this.keys.find((x) => x.id === id);
  }

  /** Re-reads the file (SIGHUP, or a token from a newer key); a broken file keeps the keys we have. */
  reload(): void {
    this.lastLoad = this.now();
    try {
      this.mtimeMs = fs.statSync(this.file).mtimeMs;
      this.keys = parse(fs.readFileSync(this.file, 'utf8'), this.file);
    } catch {
      // A file being edited by hand or lost: tokens signed so far must keep verifying.
    }
  }
}

/** Appends a new key that signs from now on; the old ones keep verifying. Returns the new key's id. */
export function rotateKeys(dataDir: string, now = new Date()): { id: string; keys: number } {
  const ring = FileKeyRing.open(dataDir);
  const keys = parse(fs.readFileSync(ring.file, 'utf8'), ring.file);
  const next = (Math.max(...keys.map((k) => parseInt(k.id, 36))) + 1).toString(36);
  keys.push(newKey(next, now));
  writeAtomically(ring.file, format(keys), false);
  return { id: next, keys: keys.length };
}

/** A ring held in memory (tests, benchmarks): the last key signs. */
export function memoryKeyRing(...secrets: string[]): KeyRing {
  const keys = secrets.map((s, i): SigningKey => ({ id: (i + 1).toString(36), secret: Buffer.from(s.padEnd(SECRET_BYTES, '.')), created: new Date(0).toISOString() }));
  return { current: keys[keys.length - 1]!, get: (id) => keys.find((k) => k.id === id) };
}

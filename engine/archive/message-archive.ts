/*
 * message-archive.ts — the optional per-account archive of accepted messages:
 * each message's source as the listener accepted it (the intake body, before
 * the rewrap), kept as a file per message in a folder per UTC day and account:
 *
 *   <dir>/<YYYY-MM-DD>/<account>/<intake id>.eml
 *
 * Why the accepted source and not the rewrapped copies: it is one file per
 * message (a copy is made per recipient), it is what the customer sent (what a
 * support desk is asked about), and it holds no per-recipient tokens (the
 * rewrapped copies carry live unsubscribe and tracking links of each recipient).
 *
 * Why files per day: retention drops a whole day of an account with one
 * recursive remove (archive-retention.ts), never a scan of messages, and the
 * bodies stay out of LevelDB (no compaction of archived bytes). The day is the
 * one the intake id encodes (its first 9 characters are the enqueue time in
 * base 36, common/durable-queue.ts newQueueId), so a lookup by id and account
 * is one path, no index.
 *
 * Cost on the rewrap (not the SMTP session): a body the queue keeps as a blob
 * file is hard-linked (no copy); an inline one (≤ 256 KiB) is one unsynced
 * file write. The archive is a convenience, not a record: a crash may lose the
 * last unsynced files, never mail. Nothing is written when the account's
 * archive is off.
 *
 * Config: engine.archive.enabled (false; on in `postino up`), engine.archive.retentionDays (7),
 * accounts[].archive.{enabled,retentionDays} (null = the node's).
 * Side effects: files under <data>/hosted/archive.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { AccountConfig, EngineConfig } from '../../common/config.js';

export const DAY_MS = 86_400_000;
/** Queue ids: 9 base-36 time digits, a counter, random hex (newQueueId); nothing else names a file here. */
const ID = /^[0-9A-Z]{12,40}$/;
const ACCOUNT = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Enqueue times outside this range are not a newQueueId's: such an id is not archived. */
const MIN_TIME = Date.UTC(2020, 0, 1);
const MAX_TIME = Date.UTC(2200, 0, 1);

export interface ArchivePolicy {
  enabled: boolean;
  retentionDays: number;
}

/** An account's archive settings: its own where set, else the node's (engine.archive). */
export function archivePolicy(node: EngineConfig['archive'], account: AccountConfig | undefined): ArchivePolicy {
  return {
    enabled: account?.archive.enabled ?? node.enabled,
    retentionDays: account?.archive.retentionDays ?? node.retentionDays,
  };
}

/** The UTC day (YYYY-MM-DD) a queue id was made on, or undefined for an id of another shape. */
export function dayOfId(id: string): string | undefined {
  if (!ID.test(id)) return undefined;
  const t = parseInt(id.slice(0, 9), 36);
  if (!(t >= MIN_TIME && t < MAX_TIME)) return undefined;
  return new Date(t).toISOString().slice(0, 10);
}

/** What the archive is given for one message: where its bytes are. */
export interface ArchiveSource {
  id: string;
  account: string;
  /** The blob file holding the body (hard-linked), when the queue keeps it in a file. */
  file?: string | undefined;
  /** Otherwise the bytes. */
  read(): Promise<Buffer>;
}

export class MessageArchive {
  /** Day folders known to exist, so a message costs no mkdir (reset when retention removes one). */
  private readonly made = new Set<string>();

  constructor(
    readonly dir: string,
    /** The policy of an account now (accounts change live). */
    readonly policy: (account: string) => ArchivePolicy,
  ) {}

  private pathOf(day: string, account: string, id: string): string {
    return path.join(this.dir, day, account, `${id}.eml`);
  }

  /** Keeps the message when its account archives; false when it does not (or the id is not a queue id). */
  async keep(src: ArchiveSource): Promise<boolean> {
    if (!this.policy(src.account).enabled || !ACCOUNT.test(src.account)) return false;
    const day = dayOfId(src.id);
    if (!day) return false;
    const folder = path.join(this.dir, day, src.account);
    if (!this.made.has(folder)) {
      await fsp.mkdir(folder, { recursive: true });
      this.made.add(folder);
    }
    const target = this.pathOf(day, src.account, src.id);
    if (src.file) {
      try {
        await fsp.link(src.file, target);
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return true; // a second attempt at the same message
        if (code !== 'EXDEV' && code !== 'EPERM') throw err; // another file system: copy below
      }
    }
    await fsp.writeFile(target, await src.read());
    return true;
  }

  /**
   * The archived source of message `id` in `account`, or undefined (never archived, past
   * retention, another account's: the path names the account, so no id reaches another's).
   */
  async read(account: string, id: string): Promise<Buffer | undefined> {
    const day = dayOfId(id);
    if (!day || !ACCOUNT.test(account)) return undefined;
    try {
      return await fsp.readFile(this.pathOf(day, account, id));
    } catch {
      return undefined;
    }
  }

  /** Retention removed this folder: the next message of that day and account makes it again. */
  forget(folder: string): void {
    for (const f of this.made) if (f === folder || f.startsWith(folder + path.sep)) this.made.delete(f);
  }
}

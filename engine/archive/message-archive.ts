/*
 * message-archive.ts — the optional per-account archive of accepted messages:
 * each message's source as the listener accepted it (the intake body, before
 * the rewrap), kept in a folder per UTC day and account:
 *
 *   <dir>/<YYYY-MM-DD>/<account>/<run>-<n>.seg   records appended by this process (archive-segments.ts)
 *   <dir>/<YYYY-MM-DD>/<account>/<intake id>.eml a body the queue kept as a blob file, hard-linked;
 *                                                 also every message archived before segments
 *
 * Why the accepted source and not the rewrapped copies: it is one record per
 * message (a copy is made per recipient), it is what the customer sent (what a
 * support desk is asked about), and it holds no per-recipient tokens (the
 * rewrapped copies carry live unsubscribe and tracking links of each recipient).
 *
 * Why folders per day: retention drops a whole day of an account with one
 * recursive remove and one key-range delete (archive-retention.ts, drop()),
 * never a scan of messages, and the bodies stay out of LevelDB (no compaction
 * of archived bytes). The day is the one the intake id encodes (its first 9
 * characters are the enqueue time in base 36, common/durable-queue.ts
 * newQueueId).
 *
 * Why segments and not a file per message (issue #17): a file per message was
 * an open(O_CREAT), a write and a close, three thread-pool trips on the rewrap,
 * and the inode creation alone (`__x64_sys_openat`, ext4) was 11% of all CPU
 * samples of the hosted process under `postino up` with 2 KB messages, ~0.4 ms
 * of the main thread per message: the largest single per-message cost found.
 * Now records wait for the segment of their day and account and go out
 * together, one positional writev per batch while the previous batch is on the
 * wire (group commit; the first record of a batch waits up to 20 ms for others,
 * since messages reach the archive one by one), and a segment is opened once
 * per process, day and account (again past 64 MiB or after a minute idle).
 * keep() answers the rewrap once the archive holds the bytes, so that wait is
 * not on the mail path; read() answers a held record from memory until it is
 * written and indexed. Measured with 2 KB messages through `postino up`
 * (1,500 messages, strace of the hosted process): openat 1,500 → 1 and close
 * 1,524 → 25 (the archive's open, write and close per message, three pool
 * trips, became ~0.35 pwritev per message at those rates); hosted CPU per
 * message 9.0 → 6.7 ms (medians of 3 alternating runs on a loaded machine).
 *
 * The index: one key per message in the node's store (`ar!<account>!<id>` →
 * segment, offset, length), written unsynced through the store's group commit
 * after the record's bytes were written, so `read` is one point read and one
 * positional read, no scan of a day, and an entry never precedes its bytes.
 * (The alternative, an index inside the segments, would need a scan or a rebuild
 * at start; the store is already there and batched.) The key names the account
 * and so does the folder, so no id reaches another account's record; a record
 * is checked on read (archive-segments.ts), so an entry a crash left pointing
 * at a lost tail reads as "not archived", never another message's bytes.
 *
 * Cost on the rewrap (not the SMTP session): a body the queue keeps as a blob
 * file is hard-linked (one syscall, no copy: a body of up to 50 MB copied into a
 * segment would cost more than the one link); an inline one (≤ 256 KiB) is a
 * share of one unsynced batched write and of one unsynced LevelDB batch. The
 * archive is a convenience, not a record: a crash may lose the last unsynced
 * (or still held) records, never mail; a failed write is logged. Nothing is
 * written when the account's archive is off.
 *
 * Config: engine.archive.enabled (false; on in `postino up`), engine.archive.retentionDays (7),
 * accounts[].archive.{enabled,retentionDays} (null = the node's).
 * Side effects: files under <data>/hosted/archive; `ar!` keys in the hosted store.
 */
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { AccountConfig, EngineConfig } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import type { Store } from '../../common/store.js';
import { readRecord, recordBytes, Segment, SEGMENT_NAME, type Placed } from './archive-segments.js';

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

/** Index keys in the node's store: `ar!<account>!<intake id>` → "<segment>:<offset>:<length>". */
const INDEX_PREFIX = 'ar!';
const indexKey = (account: string, id: string): string => `${INDEX_PREFIX}${account}!${id}`;
/** The first 9 characters of the ids of a day: ids sort by enqueue time (newQueueId), so a day is a key range. */
const timePrefix = (ms: number): string => ms.toString(36).toUpperCase().padStart(9, '0');
/**
 * A segment no record went to for this long is closed (a later record of its day and account
 * starts another): bounds the open files to the accounts of the last minutes.
 */
const IDLE_CLOSE_MS = 60_000;
/** At most this many segments open at once (least recently used closed first): file descriptors. */
const MAX_OPEN_SEGMENTS = 128;
/**
 * Bytes held for records not yet written and indexed beyond which keep() waits for its own
 * record (a disk slower than the intake slows the rewrap instead of filling memory).
 */
const MAX_HELD_BYTES = 32 * 1024 * 1024;

export interface ArchiveOptions {
  /** Write failures of records keep() no longer waits for are logged here. */
  log?: Logger | undefined;
  clock?: () => number;
}

export class MessageArchive {
  /** Day folders known to exist, so a hard link costs no mkdir (reset when retention removes one). */
  private readonly made = new Set<string>();
  /** The segment each day folder of an account appends to now, least recently used first. */
  private readonly segments = new Map<string, Segment>();
  /** Segments closing (full, idle, retention): awaited by drop() and close(). */
  private readonly retiring = new Set<Segment>();
  /** Names segments of this process: never one a previous run wrote (archive-segments.ts). */
  private readonly run = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  private seq = 0;
  /** Records kept but not yet written and indexed, by index key: read() answers them from here. */
  private readonly held = new Map<string, Buffer>();
  private heldBytes = 0;
  private readonly clock: () => number;
  /** Batches written and the records in them (a batch is one write and one index commit). */
  readonly stats = { batches: 0, records: 0 };

  constructor(
    readonly dir: string,
    /** The policy of an account now (accounts change live). */
    readonly policy: (account: string) => ArchivePolicy,
    /** The node's store: the index of where each record is (written unsynced, after the record's bytes). */
    private readonly store: Store,
    private readonly options: ArchiveOptions = {},
  ) {
    this.clock = options.clock ?? Date.now;
  }

  private folderOf(day: string, account: string): string {
    return path.join(this.dir, day, account);
  }

  /**
   * Keeps the message when its account archives; false when it does not (or the id is not a
   * queue id). Resolves once the archive holds the bytes (a blob linked, a body read): the
   * record is written and indexed in the background with others (read() answers it meanwhile),
   * a failure logged; only while MAX_HELD_BYTES wait does it resolve after its own write.
   */
  async keep(src: ArchiveSource): Promise<boolean> {
    if (!this.policy(src.account).enabled || !ACCOUNT.test(src.account)) return false;
    const day = dayOfId(src.id);
    if (!day) return false;
    const folder = this.folderOf(day, src.account);
    if (src.file) {
      if (!this.made.has(folder)) {
        await fsp.mkdir(folder, { recursive: true });
        this.made.add(folder);
      }
      try {
        await fsp.link(src.file, path.join(folder, `${src.id}.eml`));
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return true; // a second attempt at the same message
        if (code !== 'EXDEV' && code !== 'EPERM') throw err; // another file system: copied into a segment below
      }
    }
    const body = await src.read();
    const key = indexKey(src.account, src.id);
    this.held.set(key, body);
    this.heldBytes += body.length;
    const written = this.segmentFor(folder, src.account, recordBytes(src.id, body.length))
      .append(src.id, body)
      .finally(() => {
        this.heldBytes -= body.length;
        if (this.held.get(key) === body) this.held.delete(key);
      });
    if (this.heldBytes > MAX_HELD_BYTES) await written;
    else
      written.catch((err: unknown) =>
        this.options.log?.warn({ err, event: 'archive-write-failed', queueId: src.id, account: src.account }, 'message not archived (the archive is a convenience; the message goes on)'),
      );
    return true;
  }

  /** The segment a record of `bytes` goes to in `folder`: the open one, or a new one when it is full (or none is open). */
  private segmentFor(folder: string, account: string, bytes: number): Segment {
    const now = this.clock();
    let seg = this.segments.get(folder);
    if (seg) this.segments.delete(folder); // re-inserted last: the map stays in least-recently-used order
    if (!seg || !seg.fits(bytes)) {
      if (seg) this.retire(seg);
      seg = new Segment(folder, `${this.run}-${++this.seq}.seg`, (placed) => this.index(account, placed));
    }
    seg.lastUsed = now;
    this.segments.set(folder, seg);
    for (const [f, s] of this.segments) {
      if (this.segments.size <= MAX_OPEN_SEGMENTS && now - s.lastUsed < IDLE_CLOSE_MS) break;
      this.segments.delete(f);
      this.retire(s);
    }
    return seg;
  }

  /** The index entries of a written batch, unsynced (the archive is a convenience), in the store's group commit. */
  private index(account: string, placed: readonly Placed[]): Promise<void> {
    this.stats.batches++;
    this.stats.records += placed.length;
    return this.store.commit(
      placed.map((p) => ({ type: 'put' as const, key: indexKey(account, p.id), value: Buffer.from(`${p.segment}:${p.offset}:${p.length}`, 'latin1') })),
      { sync: false },
    );
  }

  private retire(seg: Segment): void {
    this.retiring.add(seg);
    void seg.close().finally(() => this.retiring.delete(seg));
  }

  /**
   * The archived source of message `id` in `account`, or undefined (never archived, past
   * retention, another account's: the index key and the folder name the account, so no id
   * reaches another's; a record lost or torn by a crash reads as not archived). Messages
   * archived before segments (one `<id>.eml` per message) and hard-linked blobs are read
   * from their file.
   */
  async read(account: string, id: string): Promise<Buffer | undefined> {
    const day = dayOfId(id);
    if (!day || !ACCOUNT.test(account)) return undefined;
    const folder = this.folderOf(day, account);
    const held = this.held.get(indexKey(account, id));
    if (held) return Buffer.from(held);
    let entry: Buffer | undefined;
    try {
      entry = this.store.getNow(indexKey(account, id));
    } catch {
      entry = undefined; // the store is closed or reopening: try the file below
    }
    const [segment, offset, length] = entry ? entry.toString('latin1').split(':') : [];
    if (segment && SEGMENT_NAME.test(segment) && /^\d+$/.test(offset ?? '') && /^\d+$/.test(length ?? '')) {
      const body = await readRecord(path.join(folder, segment), Number(offset), id, Number(length));
      if (body) return body;
    }
    try {
      return await fsp.readFile(path.join(folder, `${id}.eml`));
    } catch {
      return undefined;
    }
  }

  /**
   * Retention (archive-retention.ts): forgets a day of an account, its index entries (a key
   * range: ids start with their enqueue time), then its folder. The segment open there is
   * closed first, its last records written and indexed, so no entry of that day is written
   * after the range was cleared.
   */
  async drop(day: string, account: string): Promise<void> {
    const folder = this.folderOf(day, account);
    this.forget(folder);
    const seg = this.segments.get(folder);
    if (seg) {
      this.segments.delete(folder);
      this.retire(seg);
    }
    await Promise.all([...this.retiring].filter((s) => s.folder === folder).map((s) => s.close()));
    const start = Date.parse(`${day}T00:00:00Z`);
    if (ACCOUNT.test(account) && Number.isFinite(start)) {
      await this.store.db.clear({ gte: indexKey(account, timePrefix(start)), lt: indexKey(account, timePrefix(start + DAY_MS)) });
    }
    await fsp.rm(folder, { recursive: true, force: true });
  }

  /** Retention removed this folder: the next message of that day and account makes it again. */
  forget(folder: string): void {
    for (const f of this.made) if (f === folder || f.startsWith(folder + path.sep)) this.made.delete(f);
  }

  /** Closes every segment once its queued records are written and indexed (before the store closes). */
  async close(): Promise<void> {
    for (const seg of this.segments.values()) this.retire(seg);
    this.segments.clear();
    while (this.retiring.size > 0) await Promise.allSettled([...this.retiring].map((s) => s.close()));
  }
}

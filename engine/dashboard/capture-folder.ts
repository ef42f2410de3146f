/*
 * capture-folder.ts — reads what the capture sink stored (sink/capture-sink.ts:
 * <dir>/<id>.eml and the <id>.json written after it as the commit marker), for
 * the captured-mail pages. Read-only: the sink owns the folder.
 *
 * A message is listed once its .json exists. Summaries (subject, From, To) come
 * from the .eml's header block only (at most HEADER_READ bytes) and are cached by
 * id: the sink never rewrites a file. Pages are newest first, by id (the sink's
 * ids start with the time in base 36, so they sort by arrival), with the cursor
 * being the last id shown.
 * Which copy a delivery went to: the sink answers `250 2.0.0 Ok: captured as <id>`,
 * and the delivered event keeps that reply (`capturedIdOf`).
 *
 * Side effects: file reads (a directory listing per list page).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ParsedMail } from 'mailparser';
import type { PostinoEvent } from '../../common/events.js';
import { decodeWords, getHeader, headerBlockEnd, parseHeaderBlock } from '../../common/mime-header.js';
import { parseMail } from './mail-view.js';

/** Sink ids are base-36 time, a counter and random hex, all upper case: anything else is not a file of ours. */
const ID = /^[0-9A-Z]{8,64}$/;
/** Enough for any real header block; the summary needs only a few fields of it. */
const HEADER_READ = 64 * 1024;
/** Summaries remembered; a demo sink rarely holds more, and they are cheap to read again. */
const MAX_CACHED = 20_000;

export interface CapturedSummary {
  id: string;
  receivedAt: string;
  mailFrom: string;
  rcptTo: string[];
  size: number;
  subject: string;
  from: string;
  to: string;
  messageId: string;
}

export function isCaptureId(id: string): boolean {
  return ID.test(id);
}

/** The sink id a delivered event's reply names, if it went to the capture sink. */
export function capturedIdOf(e: PostinoEvent): string | undefined {
  if (e.type !== 'delivered' || !e.smtp) return undefined;
  const m = /captured as ([0-9A-Z]{8,64})\b/.exec(e.smtp.response);
  return m?.[1];
}

export class CaptureFolder {
  private readonly cache = new Map<string, CapturedSummary>();

  private constructor(readonly dir: string) {}

  /** The folder when it exists (the sink runs on this machine), else undefined. */
  static open(dir: string): CaptureFolder | undefined {
    return fs.existsSync(dir) && fs.statSync(dir).isDirectory() ? new CaptureFolder(dir) : undefined;
  }

  /** Newest first, ids below `before` (the previous page's last id); `next` continues. */
  async list(before: string | undefined, limit: number): Promise<{ items: CapturedSummary[]; next: string | null }> {
    const ids = (await fsp.readdir(this.dir))
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -5))
      .filter((id) => ID.test(id) && (before === undefined || id < before))
      .sort()
      .reverse();
    const page = ids.slice(0, limit);
    const items = (await Promise.all(page.map((id) => this.summary(id)))).filter((s): s is CapturedSummary => s !== undefined);
    return { items, next: ids.length > limit ? page[page.length - 1]! : null };
  }

  async summary(id: string): Promise<CapturedSummary | undefined> {
    if (!ID.test(id)) return undefined;
    const known = this.cache.get(id);
    if (known) return known;
    let meta: { receivedAt: string; mailFrom: string; rcptTo: string[]; size: number };
    let head: Buffer;
    try {
      meta = JSON.parse(await fsp.readFile(path.join(this.dir, `${id}.json`), 'utf8')) as typeof meta;
      const fh = await fsp.open(path.join(this.dir, `${id}.eml`));
      try {
        const buf = Buffer.alloc(HEADER_READ);
        const { bytesRead } = await fh.read(buf, 0, HEADER_READ, 0);
        head = buf.subarray(0, bytesRead);
      } finally {
        await fh.close();
      }
    } catch {
      return undefined; // not committed yet, or removed
    }
    const end = headerBlockEnd(head);
    const fields = parseHeaderBlock(end >= 0 ? head.subarray(0, end) : head);
    const h = (name: string): string => {
      const f = getHeader(fields, name);
      return f === undefined ? '' : decodeWords(f);
    };
    const s: CapturedSummary = { id, receivedAt: meta.receivedAt, mailFrom: meta.mailFrom, rcptTo: meta.rcptTo, size: meta.size, subject: h('subject'), from: h('from'), to: h('to'), messageId: h('message-id') };
    if (this.cache.size >= MAX_CACHED) this.cache.clear();
    this.cache.set(id, s);
    return s;
  }

  /** The stored message as received, or undefined. */
  async raw(id: string): Promise<Buffer | undefined> {
    if (!ID.test(id)) return undefined;
    try {
      return await fsp.readFile(path.join(this.dir, `${id}.eml`));
    } catch {
      return undefined;
    }
  }

  /** The message parsed (HTML and text parts, headers), or undefined. */
  async parsed(id: string): Promise<ParsedMail | undefined> {
    const raw = await this.raw(id);
    if (!raw) return undefined;
    return parseMail(raw);
  }
}

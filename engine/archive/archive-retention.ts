/*
 * archive-retention.ts — forgets archived messages past their account's
 * retention (message-archive.ts), on the same timer and in the same spirit as
 * the event log's retention (engine/events/retention.ts): in steps that yield
 * to the event loop, with the clock injected so tests expire days without
 * waiting for them.
 *
 * A day folder of an account goes as a whole once the day ended more than
 * retentionDays ago (a message is kept at least retentionDays, at most one day
 * more); an emptied day folder goes too. An account no longer configured
 * keeps the node's retention (engine.archive.retentionDays).
 *
 * Config: engine.archive.retentionDays (7), accounts[].archive.retentionDays,
 * pruned every events.pruneIntervalSeconds (600).
 * Side effects: removes folders under the archive's directory and their index
 * entries in the store (MessageArchive.drop).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import type { Logger } from '../../common/log.js';
import { DAY_MS, type MessageArchive } from './message-archive.js';

const DAY = /^\d{4}-\d{2}-\d{2}$/;

export interface ArchivePruneResult {
  /** Day folders of an account removed. */
  folders: number;
}

async function entries(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir)).sort();
  } catch {
    return [];
  }
}

/** One pass over the archive as of `now` (ms). */
export async function pruneArchive(archive: MessageArchive, now: number, log?: Logger): Promise<ArchivePruneResult> {
  let folders = 0;
  for (const day of await entries(archive.dir)) {
    if (!DAY.test(day)) continue;
    const dayEnd = Date.parse(`${day}T00:00:00Z`) + DAY_MS;
    const dayDir = path.join(archive.dir, day);
    let left = 0;
    for (const account of await entries(dayDir)) {
      const keepDays = archive.policy(account).retentionDays;
      if (dayEnd > now - keepDays * DAY_MS) {
        left++;
        continue;
      }
      await archive.drop(day, account); // its folder and its index entries
      folders++;
      await yieldNow();
    }
    if (left === 0) {
      archive.forget(dayDir);
      await fsp.rm(dayDir, { recursive: true, force: true });
    }
  }
  if (folders) log?.info({ event: 'archive-pruned', folders }, 'removed archived messages past their retention');
  return { folders };
}

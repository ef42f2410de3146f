/*
 * feed-source.ts — where the DataExporter feed (http-routes.ts) reads from.
 *
 * One node (LevelDB, the default): its own event log; `seq` is the log's, and
 * the watermark (event-log.ts) keeps a reader from passing an event that
 * commits late. Several nodes (storage.postgres): the global feed in
 * PostgreSQL that every node ships its log to (event-shipper.ts, pg-feed.ts);
 * `seq` is the global order, the same through every node.
 */
import type { PostinoEvent } from '../../common/events.js';
import type { EventLog } from './event-log.js';

export interface FeedSource {
  /** 'local': this node's log (its recipient index applies); 'global': every node's events. */
  readonly scope: 'local' | 'global';
  /** The highest seq a reader may see now: no event at or below it can still appear. */
  top(): Promise<number>;
  /** Events with seq in (after, top], oldest first, streamed; `account` may narrow them (the caller still filters). */
  scan(after: number, top: number, account?: string): AsyncGenerator<PostinoEvent>;
}

export function localFeed(events: EventLog): FeedSource {
  return {
    scope: 'local',
    top: async () => events.watermark,
    scan: (after, top) => events.scan(after, top),
  };
}

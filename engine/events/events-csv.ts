/*
 * events-csv.ts — one event as one CSV row (RFC 4180, common/csv.ts) for
 * `GET /api/events.csv`.
 *
 * Columns: the fixed fields of the event vocabulary (common/events.ts) with
 * nested objects flattened to dotted names (`smtp.code`, `bounce.class`,
 * `report.id`, …), then one `metadata.<key>` column per metadata key, then
 * `other`: any field this list does not know yet (a type added later), as
 * JSON, so nothing is silently dropped. Booleans are `true`/`false`, absent
 * fields empty.
 *
 * The metadata keys must be known before the header row is written; the
 * route either takes them from `metadata=k1,k2` or collects them in a first
 * pass over the same range (bounded by MAX_METADATA_COLUMNS; keys past it go
 * to `metadata.other` as JSON).
 * Side effects: none.
 */
import { csvRow } from '../../common/csv.js';
import type { PostinoEvent } from '../../common/events.js';

/** Past this many distinct metadata keys the rest share one JSON column (a header row must stay readable). */
export const MAX_METADATA_COLUMNS = 50;

type Cell = string | number | boolean | undefined;

/** Column name → how to read it. Order is the column order. */
const FIXED: ReadonlyArray<[string, (e: PostinoEvent) => Cell]> = [
  ['seq', (e) => e.seq],
  ['id', (e) => e.id],
  ['type', (e) => e.type],
  ['at', (e) => e.at],
  ['account', (e) => e.account],
  ['messageId', (e) => e.messageId],
  ['queueId', (e) => e.queueId],
  ['intakeId', (e) => e.intakeId],
  ['recipient', (e) => e.recipient],
  ['sender', (e) => e.sender],
  ['tag', (e) => e.tag],
  ['stream', (e) => e.stream],
  ['smtp.code', (e) => e.smtp?.code],
  ['smtp.enhanced', (e) => e.smtp?.enhanced],
  ['smtp.response', (e) => e.smtp?.response],
  ['bounce.class', (e) => e.bounce?.class],
  ['bounce.status', (e) => e.bounce?.status],
  ['bounce.source', (e) => e.bounce?.source],
  ['url', (e) => e.url],
  ['machine', (e) => e.machine],
  ['first', (e) => e.first],
  ['userAgent', (e) => e.userAgent],
  ['via', (e) => e.via],
  ['list', (e) => e.list],
  ['report.id', (e) => e.report?.id],
  ['report.format', (e) => e.report?.format],
  ['report.reportingMta', (e) => e.report?.reportingMta],
  ['report.feedbackType', (e) => e.report?.feedbackType],
  ['report.stored', (e) => e.report?.stored],
  ['suppressedNow', (e) => e.suppressedNow],
  ['reason', (e) => e.reason],
  ['nextAttemptAt', (e) => e.nextAttemptAt],
  ['rule', (e) => e.rule],
  ['relay', (e) => e.relay],
  ['figures', (e) => (e.figures ? JSON.stringify(e.figures) : undefined)],
];

const KNOWN_FIELDS = new Set([...FIXED.map(([n]) => n.split('.')[0]!), 'metadata']);

export class EventCsv {
  private readonly keys: string[];
  private readonly keySet: Set<string>;

  /** `metadataKeys`: the metadata columns, in order (at most MAX_METADATA_COLUMNS are kept). */
  constructor(metadataKeys: Iterable<string>) {
    this.keys = [...new Set(metadataKeys)].slice(0, MAX_METADATA_COLUMNS);
    this.keySet = new Set(this.keys);
  }

  header(): string {
    return csvRow([...FIXED.map(([n]) => n), ...this.keys.map((k) => `metadata.${k}`), 'metadata.other', 'other']);
  }

  row(e: PostinoEvent): string {
    const meta = e.metadata ?? {};
    const rest: Record<string, string> = {};
    for (const [k, v] of Object.entries(meta)) if (!this.keySet.has(k)) rest[k] = v;
    const other: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(e)) if (!KNOWN_FIELDS.has(k) && v !== undefined) other[k] = v;
    return csvRow([
      ...FIXED.map(([, get]) => get(e)),
      ...this.keys.map((k) => meta[k]),
      Object.keys(rest).length ? JSON.stringify(rest) : undefined,
      Object.keys(other).length ? JSON.stringify(other) : undefined,
    ]);
  }
}

/*
 * render.ts (copy step) — writes the copy out as a stream: its header block,
 * then the original bytes with only the changed body parts replaced. A
 * changed part is encoded with its own Content-Transfer-Encoding (mime-text.ts);
 * every byte range between changed parts (attachments, untouched parts,
 * preambles, boundaries) is streamed from the intake message as it is, so it
 * stays byte-identical and a large attachment is never in memory.
 * A message whose MIME structure was not read to the end (over
 * engine.mimeNestingLimit or engine.mimeMaxParts, mime-scan.ts) is rejected
 * by mime-limits.ts before any copy step; render, the writer, refuses it too
 * should it ever get one: its parts cannot be written faithfully.
 */
import { Readable } from 'node:stream';
import type { HeaderField } from '../../../common/mime-header.js';
import type { BodySource } from '../body-source.js';
import { encodeText } from '../mime-text.js';
import { mimeLimitRejection, type MimePart } from '../mime-scan.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

export type Segment = Buffer | { start: number; end: number };

function joinFields(fields: readonly HeaderField[]): Buffer {
  return Buffer.concat([...fields.map((f) => f.raw), Buffer.from('\r\n')]);
}

export function streamSegments(source: BodySource, segments: Segment[]): Readable {
  return Readable.from(
    (async function* () {
      for (const s of segments) {
        if (Buffer.isBuffer(s)) {
          if (s.length) yield s;
        } else if (s.end > s.start) yield* source.stream(s.start, s.end) as AsyncIterable<Buffer>;
      }
    })(),
    { objectMode: false },
  );
}

export const render: CopyStep = {
  name: 'render',
  async run(copy: Copy, msg: MessageContext) {
    const root = msg.mime;
    const limited = mimeLimitRejection(root);
    if (limited) return limited;
    const edits: Array<{ part: MimePart; text: string }> = [];
    for (const part of msg.bodyParts) {
      const text = copy.texts.get(part.index);
      if (text !== undefined && text !== (await msg.text(part))) edits.push({ part, text });
    }
    let pos = root.bodyStart;
    const body: Segment[] = [];
    for (const { part, text } of edits) {
      const enc = await encodeText(part, text);
      if (part === root) {
        if (enc.headers) {
          // A single-part message: its part headers are the message headers.
          for (const f of enc.headers) {
            if (f.lower !== 'content-type' && f.lower !== 'content-transfer-encoding') continue;
            const at = copy.headers.findIndex((h) => h.lower === f.lower);
            if (at >= 0) copy.headers[at] = f;
            else copy.headers.push(f);
          }
        }
        body.push(enc.body);
        pos = root.bodyEnd;
        continue;
      }
      if (enc.headers) body.push({ start: pos, end: part.headerStart }, joinFields(enc.headers));
      else body.push({ start: pos, end: part.bodyStart });
      body.push(enc.body);
      pos = part.bodyEnd;
    }
    body.push({ start: pos, end: msg.source.size });
    const header = joinFields(copy.headers);
    copy.rendered = { header, body: () => streamSegments(msg.source, body) };
    copy.shared = edits.length === 0 ? { head: header, tailFrom: root.bodyStart } : undefined;
    copy.body = streamSegments(msg.source, [header, ...body]);
    return NEXT;
  },
};

/* The reference for our DATA transparency: what nodemailer's DataStream puts on the wire. */
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';

/** DataStream's output for `chunks` (after byte `lastByte`; false at the start), terminator included, as latin1. */
export async function nodemailerWire(chunks: Buffer[], lastByte: number | false = false): Promise<string> {
  const stream = new DataStream();
  stream.lastByte = lastByte;
  const out: Buffer[] = [];
  stream.on('data', (b: Buffer) => out.push(b));
  const ended = new Promise((r) => stream.on('end', r));
  for (const c of chunks) stream.write(c);
  stream.end();
  await ended;
  return Buffer.concat(out).toString('latin1');
}

/* Raw-socket SMTP sessions against a test listener (greeting, EHLO, optional STARTTLS). */
import assert from 'node:assert/strict';
import { RawSmtp } from './smtp-raw.js';

export async function open(port: number, o: { tls?: string | undefined; host?: string; local?: string } = {}): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port, o.host ?? '127.0.0.1', o.local);
  assert.match(await c.reply(), /^220 /);
  assert.match(await c.cmd('EHLO client.test'), /^250[ -]/);
  if (o.tls !== undefined) {
    assert.match(await c.cmd('STARTTLS'), /^220 /);
    await c.startTls({ ca: o.tls });
    assert.match(await c.cmd('EHLO client.test'), /^250[ -]/);
  }
  return c;
}

/** One transaction; returns the final reply (or the first refusal). */
export async function send(c: RawSmtp, from: string, to: string[], body: string): Promise<string> {
  const m = await c.cmd(`MAIL FROM:<${from}>`);
  if (!m.startsWith('250')) return m;
  for (const r of to) {
    const rr = await c.cmd(`RCPT TO:<${r}>`);
    if (!rr.startsWith('250')) return rr;
  }
  const d = await c.cmd('DATA');
  if (!d.startsWith('354')) return d;
  c.write(body + '\r\n.\r\n');
  return c.reply(30_000);
}

export function message(subject: string, text = 'Hello.'): string {
  return `From: shop@example.org\r\nTo: ada@example.com\r\nSubject: ${subject}\r\n\r\n${text}`;
}

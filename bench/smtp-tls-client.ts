/*
 * A small load client for what smtp-source cannot do: STARTTLS. Run as its own
 * process (so it does not share the event loop with the server measured):
 *
 *   node --import tsx bench/smtp-tls-client.ts PORT SESSIONS MESSAGES BYTES CAFILE
 *
 * Like smtp-source's default, one message per connection: connect, EHLO,
 * STARTTLS, TLS 1.2+ handshake (certificate verified against CAFILE), EHLO,
 * MAIL, RCPT, DATA, QUIT. Prints one JSON line: {seconds, ok, failed, latencies
 * p50/p99 of a whole session in ms}.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [port, sessions, messages, bytes, caFile] = process.argv.slice(2);
const ca = fs.readFileSync(caFile!, 'utf8');
const body = `From: bench@example.org\r\nTo: sink@example.com\r\nSubject: bench\r\n\r\n${('x'.repeat(76) + '\r\n').repeat(Math.ceil(Number(bytes) / 78))}.\r\n`;

class Conn {
  private buf = '';
  private wake: (() => void) | undefined;
  constructor(public sock: net.Socket) {
    this.listen(sock);
  }
  listen(s: net.Socket): void {
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      this.buf += d;
      this.wake?.();
    });
    s.on('error', () => this.wake?.());
    s.on('close', () => this.wake?.());
  }
  async reply(): Promise<string> {
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return m[0];
      }
      if (this.sock.destroyed) throw new Error('closed');
      await new Promise<void>((r) => (this.wake = r));
    }
  }
  async cmd(line: string, expect: string): Promise<void> {
    this.sock.write(line + '\r\n');
    const r = await this.reply();
    if (!r.startsWith(expect)) throw new Error(`${line} → ${r}`);
  }
}

async function one(): Promise<number> {
  const t0 = performance.now();
  const raw = net.connect({ port: Number(port), host: '127.0.0.1', noDelay: true });
  const c = new Conn(raw);
  try {
    if (!(await c.reply()).startsWith('220')) throw new Error('no greeting');
    await c.cmd('EHLO bench.test', '250');
    await c.cmd('STARTTLS', '220');
    raw.removeAllListeners('data');
    const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const t = tls.connect({ socket: raw, ca, servername: 'localhost', minVersion: 'TLSv1.2' }, () => resolve(t));
      t.once('error', reject);
    });
    c.sock = s;
    c.listen(s);
    await c.cmd('EHLO bench.test', '250');
    await c.cmd('MAIL FROM:<bench@example.org>', '250');
    await c.cmd('RCPT TO:<sink@example.com>', '250');
    await c.cmd('DATA', '354');
    await c.cmd(body.slice(0, -2), '250');
    await c.cmd('QUIT', '221');
    return performance.now() - t0;
  } finally {
    c.sock.destroy();
  }
}

let left = Number(messages);
let failed = 0;
const lat: number[] = [];
const t0 = performance.now();
await Promise.all(
  Array.from({ length: Number(sessions) }, async () => {
    while (left > 0) {
      left--;
      try {
        lat.push(await one());
      } catch {
        failed++;
      }
    }
  }),
);
const seconds = (performance.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const p = (q: number): number => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] ?? 0;
process.stdout.write(JSON.stringify({ seconds, ok: lat.length, failed, p50: p(0.5), p99: p(0.99) }) + '\n');

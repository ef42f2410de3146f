/*
 * SMTP servers for client tests: a real loopback socket, replies decided by the
 * test, everything the client sent recorded.
 *
 * `scriptedSmtp` answers per command line. Its default replies keep Postfix's
 * transaction rules (503 to a nested MAIL, to RCPT or DATA before MAIL; 554 to
 * DATA with no recipient accepted), and its state follows the replies actually
 * given (a MAIL answered 250 opens a transaction, a DATA answered 354 starts a
 * body), so a client that gets out of step with the server shows it.
 */
import net from 'node:net';
import { freePorts } from './ports.js';

export interface Listening {
  port: number;
  /** Ends every open connection, then stops listening. */
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1 that hands each connection to `onConnection`. */
export async function listenLoopback(onConnection: (sock: net.Socket) => void): Promise<Listening> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    onConnection(sock);
  });
  const [port] = await freePorts(1);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    port: port!,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface ScriptedOptions {
  /** Written on connect; default "220 scripted ESMTP". */
  greeting?: string;
  /** EHLO keywords before the closing 250 8BITMIME; default PIPELINING. */
  ehlo?: string[];
  /** The reply to a command line instead of the default; undefined: the default; '': no reply at all. */
  answer?: (line: string) => string | undefined;
  /** The reply to a body's final dot, or to the nth (from 0) over all connections; default "250 2.0.0 Ok: queued". */
  final?: string | ((n: number) => string);
  /**
   * Hold replies until DATA, EHLO or QUIT arrives or nothing more came for QUIET_MS, so a
   * group is "what the client sent before it had any answer" whatever its writes were (a
   * lock-step client gets its answer after the quiet time). Without it a group is one read.
   */
  holdReplies?: boolean;
}

export interface Scripted extends Listening {
  /** Every command line read, in order (body contents excluded). */
  lines: string[];
  /** Command verbs, grouped as `holdReplies` says. */
  groups: string[][];
  /** Each message's DATA bytes as received, final dot included. */
  bodies: Buffer[];
  /** Every read as it came off the socket (latin1): which bytes the client wrote together. */
  reads: string[];
  connections: number;
}

/** Without further input for this long, held replies go out. */
const QUIET_MS = 150;
const verbOf = (line: string): string => line.split(/[: ]/)[0]!.toUpperCase();

export async function scriptedSmtp(o: ScriptedOptions = {}): Promise<Scripted> {
  const s: Scripted = { port: 0, lines: [], groups: [], bodies: [], reads: [], connections: 0, close: async () => {} };
  const listening = await listenLoopback((sock) => {
    s.connections++;
    let buf: Buffer = Buffer.alloc(0);
    let inData = false;
    let mailOk = false;
    let accepted = 0;
    let held: string[] = [];
    let quiet: NodeJS.Timeout | undefined;

    const byDefault = (verb: string): string => {
      switch (verb) {
        case 'EHLO':
          return ['250-scripted', ...(o.ehlo ?? ['PIPELINING']).map((e) => `250-${e}`), '250 8BITMIME'].join('\r\n');
        case 'HELO':
        case 'NOOP':
        case 'RSET':
          return '250 2.0.0 Ok';
        case 'MAIL':
          return mailOk ? '503 5.5.1 Error: nested MAIL command' : '250 2.1.0 Ok';
        case 'RCPT':
          return mailOk ? '250 2.1.5 Ok' : '503 5.5.1 Error: need MAIL command';
        case 'DATA':
          return !mailOk ? '503 5.5.1 Error: need MAIL command' : accepted === 0 ? '554 5.5.1 Error: no valid recipients' : '354 End data with <CR><LF>.<CR><LF>';
        case 'QUIT':
          return '221 2.0.0 Bye';
        default:
          return '502 5.5.2 Error: command not recognized';
      }
    };
    /** The reply to one line, with the transaction state it leaves. */
    const reply = (line: string): string => {
      const verb = verbOf(line);
      const r = o.answer?.(line) ?? byDefault(verb);
      const ok = r.startsWith('250');
      if (verb === 'MAIL' && ok) [mailOk, accepted] = [true, 0];
      if (verb === 'RCPT' && ok) accepted++;
      if (verb === 'RSET') mailOk = false;
      if (verb === 'DATA' && r.startsWith('354')) inData = true;
      return r;
    };
    const answerAll = (lines: string[]): void => {
      const out = lines.map(reply).filter((r) => r !== '');
      if (out.length === 0 || sock.destroyed) return;
      const text = out.map((r) => `${r}\r\n`).join('');
      // 221 to QUIT and 421 (RFC 5321 3.8) close the channel.
      if (out.some((r) => /^(221|421)[ -]/.test(r))) sock.end(text);
      else sock.write(text);
    };
    const flush = (): void => {
      clearTimeout(quiet);
      quiet = undefined;
      if (held.length === 0) return;
      const lines = held;
      held = [];
      s.groups.push(lines.map(verbOf));
      answerAll(lines);
    };
    sock.on('close', () => clearTimeout(quiet));

    sock.write(`${o.greeting ?? '220 scripted ESMTP'}\r\n`);
    sock.on('data', (chunk: Buffer) => {
      s.reads.push(chunk.toString('latin1'));
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const read: string[] = [];
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          const dotAlone = buf.subarray(0, 3).toString('latin1') === '.\r\n';
          if (end < 0 && !dotAlone) break;
          const cut = dotAlone ? 3 : end + 5;
          const n = s.bodies.push(Buffer.from(buf.subarray(0, cut))) - 1;
          buf = buf.subarray(cut);
          inData = false;
          mailOk = false;
          sock.write(`${(typeof o.final === 'function' ? o.final(n) : o.final) ?? '250 2.0.0 Ok: queued'}\r\n`);
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) break;
        const line = buf.subarray(0, nl).toString('latin1');
        buf = buf.subarray(nl + 2);
        s.lines.push(line);
        const verb = verbOf(line);
        if (!o.holdReplies) {
          read.push(verb);
          answerAll([line]);
        } else if (verb === 'EHLO' || verb === 'QUIT') {
          flush();
          held.push(line);
          flush();
        } else {
          held.push(line);
          clearTimeout(quiet);
          // DATA's reply decides whether what follows is a body: answer the group now.
          if (verb === 'DATA') flush();
          else quiet = setTimeout(flush, QUIET_MS);
        }
      }
      if (read.length > 0) s.groups.push(read);
    });
  });
  s.port = listening.port;
  s.close = listening.close;
  return s;
}

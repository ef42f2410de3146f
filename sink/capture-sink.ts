/*
 * capture-sink.ts — the stand-in MTA cluster: an SMTP server that stores every
 * message it receives as <dir>/<id>.eml plus <id>.json with the envelope.
 *
 * The .json ({id, mailFrom, rcptTo, receivedAt, size, clientAddress, sessionId}) is
 * written after the .eml and is the commit marker: a message is "in the sink"
 * when its .json exists. Both are written to a temporary name, fsynced, renamed,
 * and the folder fsynced (grouped across sessions) before the sink answers 250,
 * so the sink is as durable as the stages in front of it.
 *
 * Test behaviours (`sink.rules`, default none): RCPT TO of a matching recipient
 * ("a@b.test" exactly, or "@b.test" for a domain; case-insensitive) is answered
 * with the rule's reply, for its first `times` attempts per recipient (null =
 * always), e.g. 451 three times then accepted, or always 550 5.1.1.
 *
 * Config: sink.host (127.0.0.1), sink.port (2600), sink.maxSize, sink.dir
 * (<data>/sink), sink.rules ([]). Standards: RFC 5321 (as an SMTP server), RFC 1870 (SIZE).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { splitAddress } from '../common/address.js';
import type { SinkConfig } from '../common/config.js';
import { newQueueId } from '../common/durable-queue.js';
import { PostinoError } from '../common/errors.js';
import { FolderSync, TooLargeError, writeFileSynced } from '../common/fsync.js';
import type { Logger } from '../common/log.js';
import { PostinoSMTPServer } from '../common/smtp-server.js';

export interface SinkRecord {
  id: string;
  mailFrom: string;
  rcptTo: string[];
  receivedAt: string;
  size: number;
  clientAddress: string;
  /** The SMTP session (connection) it arrived on: tests count messages per connection. */
  sessionId: string;
}

export interface CaptureSink {
  port: number;
  dir: string;
  received(): number;
  close(): Promise<void>;
}

/** A reply a rule makes the sink give: smtp-server reads `responseCode`; the text carries the enhanced code. */
class RuleReply extends Error {
  constructor(
    readonly responseCode: number,
    text: string,
  ) {
    super(text);
  }
}

/** Applies `sink.rules`, counting attempts per recipient. */
function ruleMatcher(rules: SinkConfig['rules']): (recipient: string) => RuleReply | undefined {
  const attempts = new Map<string, number>();
  const list = rules.map((r) => ({ ...r, recipient: r.recipient.toLowerCase(), code: Number(r.reply.slice(0, 3)), text: r.reply.slice(4) }));
  return (recipient) => {
    const rcpt = recipient.toLowerCase();
    const rule = list.find((r) => (r.recipient.startsWith('@') ? splitAddress(rcpt)?.domain === r.recipient.slice(1) : rcpt === r.recipient));
    if (!rule) return undefined;
    const n = (attempts.get(rcpt) ?? 0) + 1;
    attempts.set(rcpt, n);
    if (rule.times !== null && n > rule.times) return undefined;
    return new RuleReply(rule.code, rule.text);
  };
}

export async function startSink(cfg: SinkConfig, dir: string, log: Logger): Promise<CaptureSink> {
  fs.mkdirSync(dir, { recursive: true });
  const folder = new FolderSync(dir);
  let count = 0;
  const ruleFor = ruleMatcher(cfg.rules);

  async function store(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<SinkRecord> {
    const id = newQueueId();
    const eml = path.join(dir, `${id}.eml`);
    const size = await writeFileSynced(`${eml}.tmp`, stream, cfg.maxSize);
    await fsp.rename(`${eml}.tmp`, eml);
    const rec: SinkRecord = {
      id,
      mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      rcptTo: session.envelope.rcptTo.map((r) => r.address),
      receivedAt: new Date().toISOString(),
      size,
      clientAddress: session.remoteAddress,
      sessionId: session.id,
    };
    const json = path.join(dir, `${id}.json`);
    await writeFileSynced(`${json}.tmp`, [Buffer.from(JSON.stringify(rec) + '\n')]);
    await fsp.rename(`${json}.tmp`, json);
    await folder.sync();
    return rec;
  }

  const server = new PostinoSMTPServer(
    {
      name: 'postino-sink',
      banner: 'Postino capture sink',
      size: cfg.maxSize,
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      hideENHANCEDSTATUSCODES: true,
      disableReverseLookup: true,
      logger: false,
      closeTimeout: 10_000,
      onRcptTo(address, _session, callback) {
        const r = ruleFor(address.address);
        if (r) log.debug({ recipient: address.address, code: r.responseCode }, 'sink rule applied');
        callback(r ?? null);
      },
      onData(stream, session, callback) {
        store(stream, session).then(
          (rec) => {
            count++;
            log.debug({ sinkId: rec.id, size: rec.size, rcpt: rec.rcptTo.length }, 'captured');
            callback(null, `2.0.0 Ok: captured as ${rec.id}`);
          },
          (err: unknown) => {
            stream.resume(); // drain what is left so the session stays usable
            if (err instanceof TooLargeError || stream.sizeExceeded) {
              callback(new PostinoError('MESSAGE_TOO_BIG', `Message exceeds ${cfg.maxSize} bytes`));
            } else {
              log.error({ err }, 'sink write failed');
              callback(new PostinoError('SPOOL_WRITE_FAILED', 'Cannot store message, try again later'));
            }
          },
        );
      },
    },
    { greetingDelayMs: 0, trustedNetworks: [] },
  );
  // A client that resets its connection (a killed relay) is a session error, not a sink crash.
  server.on('error', (err: Error) => log.warn({ err: { message: err.message } }, 'sink session error'));
  const port = await server.listenAsync(cfg.port, cfg.host);
  log.info({ event: 'listening', what: 'sink', address: cfg.host, port, dir }, `capture sink listening on ${cfg.host}:${port}`);
  return {
    port,
    dir,
    received: () => count,
    close: () => server.closeAsync(),
  };
}

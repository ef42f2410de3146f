/*
 * A real Postfix instance of our own, for tests and benchmarks: its own
 * config_directory, queue_directory and data_directory under a temp folder,
 * one smtpd on a loopback port (master.cf), relaying everything from
 * 127.0.0.0/8 to `relayhost` (or discarding it, without one) with no DNS
 * lookups. The package's own instance
 * is never touched. Needs root (postfix's master drops to the postfix user).
 *
 *   const pf = await startPostfix({ port, relayhost: '[127.0.0.1]:2600' });
 *   ...
 *   await pf.stop();
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { requirePeer } from './peers.js';
import { waitForPort } from './ports.js';
import { tempDir } from './postino.js';

const run = promisify(execFile);

export const POSTFIX_BIN = '/usr/sbin/postfix';

/** Undefined when Postfix can be used; else the skip reason (throws under POSTINO_REQUIRE_PEERS=1). */
export function postfixMissing(): string | undefined {
  const missing = requirePeer('postfix', POSTFIX_BIN);
  if (missing || process.getuid?.() === 0) return missing;
  const reason = "postfix's master must start as root (it drops to the postfix user)";
  if (process.env.POSTINO_REQUIRE_PEERS === '1') throw new Error(`POSTINO_REQUIRE_PEERS=1: ${reason}`);
  console.log(`# SKIP ${reason}`);
  return reason;
}

export interface PostfixOptions {
  port: number;
  /** Where everything goes, e.g. "[127.0.0.1]:2600"; without it every message is discarded after queueing. */
  relayhost?: string;
  /** Extra main.cf settings (name → value). */
  main?: Record<string, string>;
  /** smtpd processes (master.cf maxproc). */
  smtpdProcesses?: number;
}

export interface Postfix {
  dir: string;
  port: number;
  /** The instance's mail log (maillog_file). */
  log(): string;
  stop(): Promise<void>;
}

const MASTER_CF = (port: number, smtpd: number): string => `# written by test/helpers/postfix.ts
127.0.0.1:${port} inet n - n - ${smtpd} smtpd
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
tlsmgr    unix - - n 1000? 1 tlsmgr
postlog   unix-dgram n - n - 1 postlogd
`;

export async function startPostfix(o: PostfixOptions): Promise<Postfix> {
  const dir = tempDir('postfix');
  fs.chmodSync(dir, 0o755); // the postfix user must reach its queue
  const etc = path.join(dir, 'etc');
  const data = path.join(dir, 'data');
  fs.mkdirSync(etc);
  fs.mkdirSync(path.join(dir, 'spool'));
  fs.mkdirSync(data);
  await run('chown', ['postfix', data]);
  fs.writeFileSync(path.join(etc, 'master.cf'), MASTER_CF(o.port, o.smtpdProcesses ?? 100));
  fs.writeFileSync(path.join(etc, 'main.cf'), '');
  const main: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: path.join(dir, 'spool'),
    data_directory: data,
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    myhostname: 'postfix.test',
    mydestination: '',
    ...(o.relayhost ? { relayhost: o.relayhost } : { default_transport: 'discard', relay_transport: 'discard' }),
    mynetworks: '127.0.0.0/8',
    smtpd_relay_restrictions: 'permit_mynetworks, reject',
    inet_protocols: 'ipv4',
    // No DNS: the relayhost is an address literal, names resolve through /etc/hosts only.
    smtp_host_lookup: 'native',
    smtp_dns_support_level: 'disabled',
    smtpd_peername_lookup: 'no',
    maillog_file: path.join(dir, 'maillog'),
    maillog_file_prefixes: dir,
    alias_maps: '',
    alias_database: '',
    local_recipient_maps: '',
    smtp_tls_security_level: 'none',
    smtpd_tls_security_level: 'none',
    // Tests want retries in seconds, not minutes.
    queue_run_delay: '1s',
    minimal_backoff_time: '1s',
    maximal_backoff_time: '2s',
    default_destination_concurrency_limit: '20',
    smtp_connection_cache_on_demand: 'yes',
    ...o.main,
  };
  await run('postconf', ['-c', etc, '-e', ...Object.entries(main).map(([k, v]) => `${k}=${v}`)]);
  const pf: Postfix = {
    dir,
    port: o.port,
    log: () => (fs.existsSync(path.join(dir, 'maillog')) ? fs.readFileSync(path.join(dir, 'maillog'), 'utf8') : ''),
    async stop() {
      await run(POSTFIX_BIN, ['-c', etc, 'stop']).catch(() => undefined);
    },
  };
  try {
    await run(POSTFIX_BIN, ['-c', etc, 'start']);
    await waitForPort(o.port, 15_000).catch(() => {
      throw new Error(`postfix not listening on ${o.port}`);
    });
  } catch (e) {
    await pf.stop();
    throw new Error(`${(e as Error).message}\n${pf.log().slice(-2000)}`);
  }
  return pf;
}

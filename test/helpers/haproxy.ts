/*
 * A real HAProxy (Debian's `haproxy`) in front of the nodes a test started:
 * TCP frontends on loopback ports, PROXY protocol v2 to the SMTP backends,
 * health checks, started in the foreground (-db) as our own child and stopped
 * by its pid. Skipped visibly when HAProxy is missing, unless
 * POSTINO_REQUIRE_PEERS=1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { requirePeer } from './peers.js';
import { waitForPort } from './ports.js';

export const HAPROXY = '/usr/sbin/haproxy';

/** Why HAProxy tests cannot run here, or undefined. */
export function haproxyMissing(): string | undefined {
  return requirePeer('haproxy', HAPROXY);
}

export interface Backend {
  name: string;
  port: number;
}

export interface Frontend {
  name: string;
  port: number;
  servers: Backend[];
  /** PROXY v2 to the servers and in their health checks (the SMTP listeners read it). */
  sendProxy: boolean;
  /**
   * The address HAProxy connects to the servers from (a loopback alias such as
   * 127.0.0.3): unlike the clients' 127.0.0.1, so a server that ignored the
   * PROXY header would see, and refuse, the balancer's address.
   */
  source?: string;
  /** `GET <path>` expecting 200 as the health check (HTTP backends); else a TCP connect. */
  httpCheck?: string;
}

export interface Haproxy {
  child: ChildProcess;
  configFile: string;
  /** The server states HAProxy reports on its stats socket (`show servers state`-like: name → UP/DOWN). */
  serverStates(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

/** The config a test runs: the shape of deploy/multi-node/haproxy.cfg with loopback ports and fast checks. */
export function haproxyConfig(frontends: Frontend[], statsSocket: string): string {
  const lines = [
    'global',
    '    maxconn 2000',
    `    stats socket ${statsSocket} mode 600 level admin`,
    'defaults',
    '    mode tcp',
    '    timeout connect 2s',
    '    timeout client 11m',
    '    timeout server 11m',
    // A server that refuses the connect: try another (a SIGKILLed node before its check fails).
    '    option redispatch',
    '    retries 2',
  ];
  for (const f of frontends) {
    lines.push(`frontend ${f.name}`, `    bind 127.0.0.1:${f.port}`, `    default_backend ${f.name}_nodes`);
    lines.push(`backend ${f.name}_nodes`, '    balance roundrobin');
    if (f.source) lines.push(`    source ${f.source}`);
    if (f.httpCheck) lines.push('    option httpchk', `    http-check send meth GET uri ${f.httpCheck}`, '    http-check expect status 200');
    for (const s of f.servers) {
      const proxy = f.sendProxy ? ' send-proxy-v2 check-send-proxy' : '';
      lines.push(`    server ${s.name} 127.0.0.1:${s.port}${proxy} check inter 1s fall 2 rise 2`);
    }
  }
  return lines.join('\n') + '\n';
}

async function statsCommand(socket: string, command: string): Promise<string> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const c = net.createConnection(socket);
    let out = '';
    c.on('connect', () => c.end(`${command}\n`));
    c.on('data', (d) => (out += d.toString()));
    c.on('end', () => resolve(out));
    c.on('error', reject);
  });
}

export async function startHaproxy(dir: string, frontends: Frontend[]): Promise<Haproxy> {
  fs.mkdirSync(dir, { recursive: true });
  const configFile = path.join(dir, 'haproxy.cfg');
  const statsSocket = path.join(dir, 'stats.sock');
  fs.writeFileSync(configFile, haproxyConfig(frontends, statsSocket));
  const check = spawn(HAPROXY, ['-c', '-f', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let checkOut = '';
  check.stdout!.on('data', (d) => (checkOut += d));
  check.stderr!.on('data', (d) => (checkOut += d));
  const code = await new Promise<number | null>((resolve) => check.on('exit', resolve));
  if (code !== 0) throw new Error(`haproxy -c rejected ${configFile}: ${checkOut}`);
  const child = spawn(HAPROXY, ['-db', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    for (const f of frontends) await waitForPort(f.port, 10_000);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`haproxy did not listen: ${(e as Error).message}\n${stderr}`);
  }
  return {
    child,
    configFile,
    async serverStates() {
      // "show stat" CSV: pxname,svname,...,status (column 18)
      const csv = await statsCommand(statsSocket, 'show stat');
      const states: Record<string, string> = {};
      for (const line of csv.split('\n')) {
        const cols = line.split(',');
        if (cols.length > 17 && cols[1] !== 'FRONTEND' && cols[1] !== 'BACKEND' && !line.startsWith('#')) states[`${cols[0]}/${cols[1]}`] = cols[17]!;
      }
      return states;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

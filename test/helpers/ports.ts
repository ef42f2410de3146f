import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';

/**
 * Where free ports are looked for: below the kernel's ephemeral range. A port taken from that
 * range (bind to 0) can be handed, between our check and the server's bind, to the source port
 * of any outgoing connection on the machine — with three test files running at once, each
 * making hundreds of SMTP and PostgreSQL connections, that happened (EADDRINUSE in CI run M).
 * Below the range only another listener can take it.
 */
const LOWEST = 20_000;
function ephemeralLow(): number {
  try {
    const low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32_768;
  } catch {
    return 32_768;
  }
}
const BELOW = ephemeralLow();
/** Ports this process handed out already: never twice, even if the first user has not bound it yet. */
const handedOut = new Set<number>();

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** The OS's choice (bound to 0, then released): the fallback when no room is left below the ephemeral range. */
async function osPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Ports free now on 127.0.0.1, chosen at random below the ephemeral range (see LOWEST). */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let tries = 0; ports.length < n && tries < 200 && BELOW - LOWEST > 1_000; tries++) {
    const p = randomInt(LOWEST, BELOW);
    if (handedOut.has(p) || !(await bindable(p))) continue;
    handedOut.add(p);
    ports.push(p);
  }
  while (ports.length < n) ports.push(await osPort());
  return ports;
}
/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listening on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

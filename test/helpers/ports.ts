import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

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

/**
 * Ports handed out by any test process on this machine: a file per port, created with O_EXCL and
 * holding the owner's pid. `handedOut` only knows this process, and the test runner runs several
 * files at once, each in its own process: two of them could pick the same free port before either
 * bound it (EADDRINUSE for a `postino up` sink in CI run P). A file whose owner has exited is free
 * again; so is one older than STALE_MS, in case its pid was reused.
 */
const RESERVED_DIR = path.join(os.tmpdir(), 'postino-test-ports');
const STALE_MS = 30 * 60_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Claims the port for this process; false when a live test process holds it. */
let reservedDirMade = false;

export function reservePort(port: number): boolean {
  const file = path.join(RESERVED_DIR, String(port));
  try {
    if (!reservedDirMade) fs.mkdirSync(RESERVED_DIR, { recursive: true });
    reservedDirMade = true;
    fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
    return true;
  } catch (e) {
    // No shared folder to reserve in: the bind check alone decides, as before.
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return true;
  }
  // Taking over a dead owner's port happens under a lock (mkdir is atomic): two processes that both
  // saw the owner dead once both wrote and read back their own pid, one after the other, and both
  // used the port (CI run E). Under the lock the owner is read again, so one of them sees the other.
  // A lock left by a process killed inside these few lines only costs that one port.
  const lock = `${file}.lock`;
  try {
    fs.mkdirSync(lock);
  } catch {
    return false;
  }
  try {
    const owner = Number(fs.readFileSync(file, 'utf8'));
    if (alive(owner) && Date.now() - fs.statSync(file).mtimeMs < STALE_MS) return false;
    fs.writeFileSync(file, String(process.pid));
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

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
    if (handedOut.has(p) || !reservePort(p) || !(await bindable(p))) continue;
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

/*
 * A slow network link on loopback: a TCP proxy that delivers every chunk,
 * in both directions, `delayMs` after it arrived (in order), as a WAN hop
 * between the forwarder and the hosted side would. Bandwidth is not limited:
 * only the round trip grows (by 2 × delayMs).
 */
import net from 'node:net';

export interface SlowLink {
  port: number;
  close(): Promise<void>;
}

/** One direction: `from`'s bytes reach `to` delayMs later; an end or error follows them. */
function delayed(from: net.Socket, to: net.Socket, delayMs: number): void {
  from.on('data', (chunk) => {
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, delayMs);
  });
  from.on('end', () => setTimeout(() => to.end(), delayMs));
  from.on('error', () => setTimeout(() => to.destroy(), delayMs));
}

export async function startSlowLink(targetPort: number, delayMs: number): Promise<SlowLink> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => sockets.delete(s));
    }
    delayed(client, upstream, delayMs);
    delayed(upstream, client, delayMs);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/*
 * A TCP proxy on loopback for tests that need a misbehaving network between
 * two of our processes: each accepted connection gets its own upstream
 * connection, `pipe` moves (and bends) the bytes, and either side closing or
 * failing tears both down. `close()` ends every pair and the server.
 */
import net from 'node:net';

export interface TcpProxy {
  port: number;
  close(): Promise<void>;
}

export async function startTcpProxy(upstreamPort: number, pipe: (client: net.Socket, upstream: net.Socket) => void): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, '127.0.0.1');
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => {
        sockets.delete(s);
        end();
      });
      s.on('error', end);
    }
    pipe(client, upstream);
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

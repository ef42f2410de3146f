/*
 * A slow network link on loopback: a TCP proxy that delivers every chunk,
 * in both directions, `delayMs` after it arrived (in order: timers of one
 * duration fire in the order they were set), as a WAN hop between the
 * forwarder and the hosted side would. Bandwidth is not limited: only the
 * round trip grows (by 2 × delayMs).
 */
import type net from 'node:net';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

function delayed(from: net.Socket, to: net.Socket, delayMs: number): void {
  from.on('data', (chunk) => {
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, delayMs);
  });
}

export function startSlowLink(targetPort: number, delayMs: number): Promise<TcpProxy> {
  return startTcpProxy(targetPort, (client, upstream) => {
    for (const s of [client, upstream]) s.setNoDelay(true);
    delayed(client, upstream, delayMs);
    delayed(upstream, client, delayMs);
  });
}

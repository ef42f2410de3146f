/*
 * smtp-server.ts — smtp-server with a configurable greeting delay.
 *
 * smtp-server waits a hard-coded 100 ms before its 220 greeting so that it can
 * refuse "early talkers" (clients that send before the greeting, typical of spam
 * bots; Postfix's postscreen does the same with its pregreet test). The wait
 * also caps a client that opens one connection per message (most apps, and
 * Postfix's smtp-source by default) at about 10 messages/second per session.
 *
 * Our intakes only take mail from networks we were told to trust, so there the
 * delay buys nothing: `greetingDelayMs` applies to clients outside
 * `trustedNetworks`, and trusted clients are greeted at once. This is done by
 * overriding SMTPConnection.init() — the one method that arms the timer — and
 * SMTPServer.connect(), which constructs the connection; both are copied from
 * smtp-server 3.21.6 (pinned exactly in package.json) apart from the delay.
 *
 * Side effects: none until listen().
 */
import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import { NetworkList } from './cidr.js';

export interface GreetingPolicy {
  greetingDelayMs: number;
  trustedNetworks: readonly string[];
}

class TunedConnection extends SMTPConnection {
  constructor(
    server: SMTPServer,
    socket: net.Socket | tls.TLSSocket,
    options: SMTPConnectionOptions | null | undefined,
    private readonly greetingDelayMs: number,
  ) {
    super(server, socket, options);
  }

  override init(): void {
    this._setListeners(() => {
      const max = this._server.options.maxClients;
      if (max && this._server.connections.size > max) {
        return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
      }
      if (this.greetingDelayMs === 0) return this.connectionReady();
      setTimeout(() => this.connectionReady(), this.greetingDelayMs).unref();
    });
  }
}

export class PostinoSMTPServer extends SMTPServer {
  private readonly trusted: NetworkList;
  private readonly delayMs: number;

  constructor(options: SMTPServerOptions, policy: GreetingPolicy) {
    super(options);
    this.trusted = new NetworkList(policy.trustedNetworks);
    this.delayMs = policy.greetingDelayMs;
  }

  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const remote = socketOptions?.remoteAddress ?? socket.remoteAddress;
    const delay = this.trusted.contains(remote) ? 0 : this.delayMs;
    const connection = new TunedConnection(this, socket, socketOptions, delay);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data) => this._onClientConnect(data));
    connection.init();
  }

  /** listen() with a promise; resolves to the bound port (tests listen on port 0). */
  listenAsync(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting and waits for sessions to end (smtp-server closes idle ones after closeTimeout). */
  closeAsync(): Promise<void> {
    return new Promise((resolve) => this.close(() => resolve()));
  }
}

/*
 * relay-switch.ts — the forwarder's relay client, replaceable while running
 * (`postino forwarder reload` with new forwarder.relay.urls): new sends use
 * the new client at once; sends already under way finish on the old one,
 * which is closed when its last send returns, so no relay session in flight
 * is cut and no message is sent twice because of the switch.
 *
 * Side effects: closes replaced clients (their pooled connections).
 */
import type { BodySource, RelaySender, SendOutcome } from '../common/smtp-client.js';

export interface ClosableSender extends RelaySender {
  close(): void;
}

interface Slot {
  client: ClosableSender;
  inFlight: number;
}

export class RelaySwitch implements RelaySender {
  private cur: Slot;

  constructor(client: ClosableSender) {
    this.cur = { client, inFlight: 0 };
  }

  /** The health (and probes) of the current client: a replaced one's down marks go with it. */
  get health(): RelaySender['health'] {
    return this.cur.client.health;
  }

  async send(envelope: { from: string; to: string[] }, openBody: () => Promise<BodySource>): Promise<SendOutcome> {
    const slot = this.cur;
    slot.inFlight++;
    try {
      return await slot.client.send(envelope, openBody);
    } finally {
      if (--slot.inFlight === 0 && slot !== this.cur) slot.client.close();
    }
  }

  replace(next: ClosableSender): void {
    const old = this.cur;
    this.cur = { client: next, inFlight: 0 };
    if (old.inFlight === 0) old.client.close();
  }

  close(): void {
    this.cur.client.close();
  }
}

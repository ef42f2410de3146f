/*
 * pseudonym.ts — the stable keyed hash that stands for a deleted recipient:
 * in the events the eraser rewrote (events/erase-recipient.ts), in the
 * `recipient.deleted` event, and as the key of the "deleted" marker that stops
 * traffic and imports from creating the entry again (recipient-db.ts).
 *
 * HMAC-SHA-256 (RFC 2104) with the node's pseudonym-key secret over the
 * account and the case-folded address: the same address of the same account
 * always gives the same pseudonym (a feed consumer can still count one
 * person's events), nobody without the key can test a guessed address against
 * it, and two accounts get unlinkable pseudonyms for the same person.
 * Side effects: none.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { caseFoldedEmail } from '../../common/address.js';

/** Hex characters kept of the MAC: 128 bits, collision-free for any realistic list. */
const PSEUDONYM_HEX = 32;
export const PSEUDONYM_PREFIX = 'erased:';

export class Pseudonymizer {
  /** Prepared once: an import checks a pseudonym per row. */
  private readonly key: KeyObject;

  constructor(secret: string) {
    this.key = createSecretKey(Buffer.from(secret, 'utf8'));
  }

  of(account: string, address: string): string {
    const mac = createHmac('sha256', this.key).update(`${account}\0${caseFoldedEmail(address)}`).digest('hex');
    return PSEUDONYM_PREFIX + mac.slice(0, PSEUDONYM_HEX);
  }
}

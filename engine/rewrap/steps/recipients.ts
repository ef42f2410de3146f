/*
 * recipients.ts (message step) — loads the recipient database entries of the
 * envelope recipients (merge fields) in one multi-get, and adds the entries
 * that traffic creates: a new address, or a known one mailed through a new
 * X-Postino-List. The writes commit in the same batch as the queue move (with
 * storage.postgres: parked in that batch, written to the shared table within
 * a second; recipient-db-postgres.ts). The lookup is one read per message; while
 * it cannot be made (PostgreSQL down) the step throws the temporary error and
 * the message waits: it is never sent without its merge values.
 * An address deleted on a privacy request is not created again (its mail is
 * stopped by the suppression the deletion kept; recipients/erase.ts).
 */
import { normalizeEmail } from '../../../common/address.js';
import { NEXT, type MessageContext, type MessageStep } from '../context.js';

export const recipients: MessageStep = {
  name: 'recipients',
  async run(msg: MessageContext) {
    const { accountId } = msg.settings;
    const db = msg.services.recipients;
    const addresses = [...new Set(msg.envelope.rcptTo.map(normalizeEmail))];
    const { records, erased } = await db.lookupForTraffic(accountId, addresses);
    const list = msg.controls.list;
    addresses.forEach((address, i) => {
      let rec = records[i];
      if (!rec && erased[i]) return;
      if (!rec) {
        rec = { address, fields: {}, lists: list ? [list] : [], firstSeen: new Date(msg.now).toISOString() };
        msg.extraOps.push(...db.trafficOps(accountId, rec, list));
      } else if (list && !rec.lists.includes(list)) {
        rec = { ...rec, lists: [...rec.lists, list] };
        msg.extraOps.push(...db.trafficOps(accountId, rec, list));
      }
      msg.recipientRecords.set(address, rec);
    });
    return NEXT;
  },
};

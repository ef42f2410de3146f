/*
 * verp.ts (copy step) — the copy's envelope sender becomes
 * `<bounce-local>+<token>@<bounce-domain>`, the token naming this copy's
 * queue id under an HMAC over queue id and recipient (common/tokens.ts), so a
 * bounce is attributed without reading it. Config: accounts[].engine.bounceDomain,
 * else engine.bounceDomain (null: VERP off, the customer's sender is kept);
 * engine.bounceLocalPart ("bounces"). A null sender (<>) stays null.
 */
import { verpAddress } from '../../../common/tokens.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

export const verp: CopyStep = {
  name: 'verp',
  run(copy: Copy, msg: MessageContext) {
    const s = msg.settings;
    if (s.bounceDomain && msg.envelope.mailFrom) copy.mailFrom = verpAddress(s.keys, s.bounceLocalPart, s.bounceDomain, copy.queueId, copy.recipient);
    return NEXT;
  },
};

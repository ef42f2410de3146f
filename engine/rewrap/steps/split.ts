/*
 * split.ts (copy step) — the per-recipient split: the pipeline makes one copy
 * per envelope recipient (each with its own queue id); this step makes sure a
 * copy reveals no Bcc recipient. A recipient found in neither To: nor Cc: is
 * a Bcc recipient: its copy says `To: <their address>` (MailUp's behaviour).
 * Every copy loses any Bcc: header the application left in (RFC 5322 3.6.3
 * lets the sender strip it; we always do). Message-ID is kept.
 */
import addressparser from 'nodemailer/lib/addressparser';
import { caseFoldedEmail } from '../../../common/address.js';
import { fieldValue, makeField, type HeaderField } from '../../../common/mime-header.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

function addressesOf(fields: readonly HeaderField[], names: readonly string[]): Set<string> {
  const out = new Set<string>();
  const visit = (list: ReturnType<typeof addressparser>): void => {
    for (const a of list) {
      if ('group' in a && a.group) visit(a.group);
      else if (a.address) out.add(caseFoldedEmail(a.address));
    }
  };
  for (const f of fields) if (names.includes(f.lower)) visit(addressparser(fieldValue(f)));
  return out;
}

const VISIBLE = ['to', 'cc'];
const visibleCache = new WeakMap<MessageContext, Set<string>>();

export const split: CopyStep = {
  name: 'split',
  run(copy: Copy, msg: MessageContext) {
    let visible = visibleCache.get(msg);
    if (!visible) {
      visible = addressesOf(msg.headers, VISIBLE);
      visibleCache.set(msg, visible);
    }
    copy.removeHeaders((h) => h === 'bcc');
    if (!visible.has(caseFoldedEmail(copy.recipient))) {
      const to = makeField('To', `<${copy.recipient}>`);
      const at = copy.headers.findIndex((f) => f.lower === 'to');
      if (at >= 0) copy.headers[at] = to;
      else copy.headers.push(to);
    }
    return NEXT;
  },
};

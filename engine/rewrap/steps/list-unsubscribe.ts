/*
 * list-unsubscribe.ts (copy step) — RFC 2369 List-Unsubscribe with an https
 * one-click URL and a mailto, plus RFC 8058 `List-Unsubscribe-Post:
 * List-Unsubscribe=One-Click`. The token (common/tokens.ts) names account,
 * list (X-Postino-List, '' = account-wide) and recipient. Bulk mail always
 * gets it; transactional mail unless `accounts[].engine.unsubscribe` is false.
 * A List-Unsubscribe the application set is kept, replaced or joined by ours
 * per accounts[].engine.existingListUnsubscribe (default keep: ours is added
 * only when there is none, so a customer's own unsubscribe page keeps working;
 * bulk mail whose own header lacks RFC 8058 one-click gets ours beside it).
 * The URL is also the `{{unsubscribe_url}}` merge field (set in every case, so
 * a footer link works even when the header is the customer's).
 */
import { fieldValue, makeField } from '../../../common/mime-header.js';
import { signUnsubscribeToken } from '../../../common/tokens.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

export const listUnsubscribe: CopyStep = {
  name: 'list-unsubscribe',
  run(copy: Copy, msg: MessageContext) {
    const s = msg.settings;
    if (!s.account.unsubscribe && msg.controls.stream !== 'bulk') return NEXT;
    const token = signUnsubscribeToken(s.keys, { account: s.accountId, list: msg.controls.list ?? '', recipient: copy.recipient, queueId: copy.queueId });
    copy.unsubscribeUrl = `${s.publicUrl}/u/${token}`;
    const theirs = copy.headers.find((h) => h.lower === 'list-unsubscribe');
    let policy = s.account.existingListUnsubscribe;
    // Bulk mail must offer one-click (RFC 8058; what Gmail and Yahoo require of bulk senders):
    // a kept header without it gets ours beside it.
    if (theirs && policy === 'keep' && msg.controls.stream === 'bulk' && !copy.headers.some((h) => h.lower === 'list-unsubscribe-post')) policy = 'add';
    if (theirs && policy === 'keep') return NEXT;
    const mailto = `mailto:${s.unsubscribeLocalPart}@${s.bounceDomain ?? s.hostname}?subject=unsubscribe%20${token}`;
    let value = `<${copy.unsubscribeUrl}>, <${mailto}>`;
    // RFC 2369 allows several URIs in one field, in order of preference: ours first.
    if (theirs && policy === 'add') value += `, ${fieldValue(theirs).trim()}`;
    copy.removeHeaders((h) => h === 'list-unsubscribe' || h === 'list-unsubscribe-post');
    copy.headers.push(makeField('List-Unsubscribe', value), makeField('List-Unsubscribe-Post', 'List-Unsubscribe=One-Click'));
    return NEXT;
  },
};

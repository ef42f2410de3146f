/*
 * list-unsubscribe.ts (copy step) — RFC 2369 List-Unsubscribe with an https
 * one-click URL and a mailto, plus RFC 8058 `List-Unsubscribe-Post:
 * List-Unsubscribe=One-Click`. The token (common/tokens.ts) names account,
 * list (X-Postino-List, '' = account-wide) and recipient. Bulk mail always
 * gets it; transactional mail unless `accounts[].engine.unsubscribe` is false.
 * Any List-Unsubscribe the application set is replaced when we add ours.
 * The URL is also the `{{unsubscribe_url}}` merge field.
 */
import { makeField } from '../../../common/mime-header.js';
import { signUnsubscribeToken } from '../../../common/tokens.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

export const listUnsubscribe: CopyStep = {
  name: 'list-unsubscribe',
  run(copy: Copy, msg: MessageContext) {
    const s = msg.settings;
    if (!s.account.unsubscribe && msg.controls.stream !== 'bulk') return NEXT;
    const token = signUnsubscribeToken(s.signingKey, { account: s.accountId, list: msg.controls.list ?? '', recipient: copy.recipient });
    copy.unsubscribeUrl = `${s.publicUrl}/u/${token}`;
    const mailto = `mailto:unsubscribe@${s.bounceDomain ?? s.hostname}?subject=unsubscribe%20${token}`;
    copy.removeHeaders((h) => h === 'list-unsubscribe' || h === 'list-unsubscribe-post');
    copy.headers.push(makeField('List-Unsubscribe', `<${copy.unsubscribeUrl}>, <${mailto}>`), makeField('List-Unsubscribe-Post', 'List-Unsubscribe=One-Click'));
    return NEXT;
  },
};

/*
 * missing-headers.ts (copy step) — a message without `Message-ID:` or `Date:`
 * gets them, as Postfix's cleanup does for its own clients
 * (always_add_missing_headers): RFC 5322 3.6 requires Date and asks for
 * Message-ID, mailbox providers penalise mail without them, and the event feed
 * keys messages by Message-ID.
 *
 * Both are derived from the intake message (queue id, time received), so every
 * copy of one message carries the same values, also when the rewrap runs again
 * after a crash. Existing headers are never changed.
 */
import { getHeader, makeField } from '../../../common/mime-header.js';
import { rfc5322Date } from '../received-header.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

/** The Message-ID we give a message that has none. */
export function fallbackMessageId(intakeQueueId: string, hostname: string): string {
  return `<${intakeQueueId}@${hostname}>`;
}

export const missingHeaders: CopyStep = {
  name: 'missing-headers',
  run(copy: Copy, msg: MessageContext) {
    if (getHeader(copy.headers, 'message-id') === undefined) {
      copy.headers.push(makeField('Message-ID', fallbackMessageId(msg.intakeId, msg.settings.hostname)));
    }
    if (getHeader(copy.headers, 'date') === undefined) {
      copy.headers.push(makeField('Date', rfc5322Date(new Date(msg.envelope.receivedAt))));
    }
    return NEXT;
  },
};

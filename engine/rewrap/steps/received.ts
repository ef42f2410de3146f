/*
 * received.ts (copy step) — our trace header on top (RFC 5321 4.4), naming
 * this copy's queue id and its one recipient.
 */
import type { HeaderField } from '../../../common/mime-header.js';
import { receivedHeader } from '../received-header.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

export const received: CopyStep = {
  name: 'received',
  run(copy: Copy, msg: MessageContext) {
    const env = { ...msg.envelope, rcptTo: [copy.recipient] };
    const raw = Buffer.from(receivedHeader(env, msg.settings.hostname, copy.queueId, new Date(msg.now)));
    const field: HeaderField = { name: 'Received', lower: 'received', raw };
    copy.headers.unshift(field);
    return NEXT;
  },
};

/*
 * feedback-ref.ts (copy step) — `X-Message-Ref: <token>` on every copy, the
 * VERP token of the copy (common/tokens.ts: queue id, key id, MAC over queue
 * id and recipient), so a complaint or bounce that quotes the original's
 * headers is attributed even when the receiver dropped the Return-Path, and
 * when VERP is off (no bounce domain). It names no address, and is not an
 * X-Postino-* header (those are controls, never delivered). One the
 * application sent is replaced, so a sender cannot plant another copy's.
 */
import { makeField } from '../../../common/mime-header.js';
import { signVerpToken } from '../../../common/tokens.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

export const FEEDBACK_REF_HEADER = 'X-Message-Ref';
const FEEDBACK_REF_LOWER = FEEDBACK_REF_HEADER.toLowerCase();

export const feedbackRef: CopyStep = {
  name: 'feedback-ref',
  run(copy: Copy, msg: MessageContext) {
    copy.removeHeaders((h) => h === FEEDBACK_REF_LOWER);
    copy.headers.push(makeField(FEEDBACK_REF_HEADER, signVerpToken(msg.settings.keys, copy.queueId, copy.recipient)));
    return NEXT;
  },
};

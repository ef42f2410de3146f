/*
 * feedback-ref.ts (copy step) — `X-Postino-Ref: <token>` on every copy, the
 * VERP token of the copy (common/tokens.ts: queue id, key id, MAC over queue
 * id and recipient), so a complaint or bounce that quotes the original's
 * headers is attributed even when the receiver dropped the Return-Path, and
 * when VERP is off (no bounce domain). It names no address. It runs after
 * header-hygiene.ts, which removes every X-Postino-* header an application
 * sent, so a sender cannot forge one.
 */
import { makeField } from '../../../common/mime-header.js';
import { signVerpToken } from '../../../common/tokens.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

export const FEEDBACK_REF_HEADER = 'X-Postino-Ref';

export const feedbackRef: CopyStep = {
  name: 'feedback-ref',
  run(copy: Copy, msg: MessageContext) {
    copy.headers.push(makeField(FEEDBACK_REF_HEADER, signVerpToken(msg.settings.keys, copy.queueId, copy.recipient)));
    return NEXT;
  },
};

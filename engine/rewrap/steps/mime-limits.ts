/*
 * mime-limits.ts (message step, the first) — a message whose MIME structure
 * went over engine.mimeNestingLimit (100, like Postfix's mime_nesting_limit)
 * or engine.mimeMaxParts (10,000) is rejected here, before any step reads a
 * header or a part: the scan (mime-scan.ts) stopped at the limit, so the rest
 * of the structure was never read and nothing may be delivered from it.
 * Its own step so that the rejection (the worker's log `step`, the result of
 * rewrap()) names the reason's stage, not the first step that happened to
 * look at the parts; the `rejected` events and their reason are unchanged.
 * Config: engine.mimeNestingLimit, engine.mimeMaxParts (through the scan).
 * Side effects: none.
 */
import { mimeLimitRejection } from '../mime-scan.js';
import { NEXT, type MessageContext, type MessageStep, type StepOutcome } from '../context.js';

export const mimeLimits: MessageStep = {
  name: 'mime-limits',
  run(msg: MessageContext): StepOutcome {
    return mimeLimitRejection(msg.mime) ?? NEXT;
  },
};

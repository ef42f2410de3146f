/*
 * pipeline.ts — the rewrap pipeline (Postal's message dequeuer shape): an
 * ordered array of small named steps, each returning `next`, `suppressed`
 * (this recipient gets no copy) or `rejected` (the message is refused).
 *
 *   message steps, once:  mime-limits → header-compat → parse-controls → schedule → recipients
 *   copy steps, per envelope recipient (split):
 *     split → suppression → verp → list-unsubscribe → footer → tracking
 *     → merge-fields → header-hygiene → received → render → dkim
 *
 * DKIM is last so that it signs what is delivered. Each finished copy is
 * handed to `onCopy` before the next is built, so only one copy's stream is
 * open at a time (memory stays flat with 100 recipients of a 20 MB message).
 * Side effects: those of the steps (reads), and whatever `onCopy` does.
 */
import type { MessageContext, CopyStep, MessageStep } from './context.js';
import { Copy } from './context.js';
import { dkim } from './steps/dkim.js';
import { feedbackRef } from './steps/feedback-ref.js';
import { footer } from './steps/footer.js';
import { headerCompat } from './steps/header-compat.js';
import { headerHygiene } from './steps/header-hygiene.js';
import { listUnsubscribe } from './steps/list-unsubscribe.js';
import { mergeFields } from './steps/merge-fields.js';
import { mimeLimits } from './steps/mime-limits.js';
import { missingHeaders } from './steps/missing-headers.js';
import { parseControls } from './steps/parse-controls.js';
import { received } from './steps/received.js';
import { recipients } from './steps/recipients.js';
import { render } from './steps/render.js';
import { schedule } from './steps/schedule.js';
import { split } from './steps/split.js';
import { suppression } from './steps/suppression.js';
import { tracking } from './steps/tracking.js';
import { verp } from './steps/verp.js';

export const MESSAGE_STEPS: readonly MessageStep[] = [mimeLimits, headerCompat, parseControls, schedule, recipients];
export const COPY_STEPS: readonly CopyStep[] = [split, suppression, verp, listUnsubscribe, footer, tracking, mergeFields, headerHygiene, feedbackRef, missingHeaders, received, render, dkim];

export type RewrapResult =
  | { kind: 'rejected'; step: string; reason: string }
  | { kind: 'done'; copies: number; suppressed: Array<{ recipient: string; step: string; reason: string }> };

export interface RewrapHooks {
  newId(): string;
  /** Consumes the copy's body (e.g. writes it to the delivery queue). */
  onCopy(copy: Copy): Promise<void>;
  /** A recipient a copy step suppressed (reported again in the result). */
  onSuppressed?(s: { recipient: string; step: string; reason: string; position: number }): void | Promise<void>;
  /** Envelope position to start at: the recipients before it were done by an earlier attempt (worker.ts). */
  startAt?: number;
}

export async function rewrap(msg: MessageContext, hooks: RewrapHooks, steps = { message: MESSAGE_STEPS, copy: COPY_STEPS }): Promise<RewrapResult> {
  for (const step of steps.message) {
    const o = await step.run(msg);
    switch (o.kind) {
      case 'next':
        continue;
      case 'rejected':
        return { kind: 'rejected', step: step.name, reason: o.reason };
      case 'suppressed':
        return { kind: 'rejected', step: step.name, reason: `a message step cannot suppress: ${o.reason}` };
    }
  }
  const suppressed: Array<{ recipient: string; step: string; reason: string }> = [];
  let copies = 0;
  const rcpts = msg.envelope.rcptTo;
  recipients: for (let i = hooks.startAt ?? 0; i < rcpts.length; i++) {
    const copy = new Copy(msg, { queueId: hooks.newId(), recipient: rcpts[i]!, position: i });
    for (const step of steps.copy) {
      const o = await step.run(copy, msg);
      switch (o.kind) {
        case 'next':
          continue;
        case 'suppressed':
          copy.body?.destroy();
          suppressed.push({ recipient: copy.recipient, step: step.name, reason: o.reason });
          await hooks.onSuppressed?.({ recipient: copy.recipient, step: step.name, reason: o.reason, position: i });
          continue recipients;
        case 'rejected':
          copy.body?.destroy();
          return { kind: 'rejected', step: step.name, reason: o.reason };
      }
    }
    await hooks.onCopy(copy);
    copies++;
  }
  return { kind: 'done', copies, suppressed };
}

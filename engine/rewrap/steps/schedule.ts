/*
 * schedule.ts (message step) — X-Postino-Send-At (or a mapped send time):
 * the copies go on the delivery queue with that `due` time, so they wait in
 * LevelDB (and survive a restart) until then. A time in the past sends now.
 * An unparseable date, or one out of range (before 2000, past
 * engine.maxScheduleDays), is refused at intake by the listener (550); one
 * that still arrives here rejects the message (`rejected` event).
 */
import { DEFAULT_CONTROL_LIMITS, sendAtRangeProblem } from '../../../common/control-headers.js';
import { parseSendAt } from '../../../common/send-at.js';
import { NEXT, type MessageContext, type MessageStep, type StepOutcome } from '../context.js';

export const schedule: MessageStep = {
  name: 'schedule',
  run(msg: MessageContext): StepOutcome {
    const c = msg.controls;
    let at = c.sendAt;
    if (c.sendAtText !== undefined) {
      at = parseSendAt(c.sendAtText);
      if (at === undefined) return { kind: 'rejected', reason: `cannot parse send date "${c.sendAtText.slice(0, 80)}"` };
    }
    // Validated before (control-headers.ts); checked again so no date here can make a later step throw.
    const range = at === undefined ? undefined : sendAtRangeProblem(at, msg.now, msg.settings.controlLimits ?? DEFAULT_CONTROL_LIMITS);
    if (range) return { kind: 'rejected', reason: `send time ${range}` };
    msg.due = at !== undefined && at > msg.now ? at : msg.now;
    return NEXT;
  },
};

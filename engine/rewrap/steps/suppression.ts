/*
 * suppression.ts (copy step) — DESIGN.md guarantee 4: a suppressed recipient
 * gets no copy and a `suppressed` event. Checks the account-wide list and the
 * X-Postino-List scope; the stream policy (transactional skips unsubscribes,
 * never bounces or complaints) is SuppressionList.check's. Two point reads in
 * LevelDB: the cost does not grow with the list (bench: `npm run bench -- rewrap`).
 */
import { NEXT, type Copy, type CopyStep, type MessageContext, type StepOutcome } from '../context.js';

export const suppression: CopyStep = {
  name: 'suppression',
  async run(copy: Copy, msg: MessageContext): Promise<StepOutcome> {
    const c = msg.controls;
    const hit = await msg.services.suppression.check(msg.settings.accountId, copy.recipient, { list: c.list, stream: c.stream });
    if (!hit) return NEXT;
    return { kind: 'suppressed', reason: `${hit.reason} (${hit.scope === '*' ? 'account' : hit.scope})` };
  },
};

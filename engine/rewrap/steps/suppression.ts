/*
 * suppression.ts (copy step) — DESIGN.md guarantee 4: a suppressed recipient
 * gets no copy and a `suppressed` event. Checks the account-wide list and the
 * X-Postino-List scope; the stream policy (transactional skips unsubscribes,
 * never bounces or complaints) is engine/suppression.ts `stops`.
 *
 * Batched: the first copy of a message checks the next CHECK_BATCH envelope
 * recipients at once (`checkMany`: one multi-get in LevelDB, one statement in
 * PostgreSQL), and the copies after it read the answer; a message to 10,000
 * recipients costs 20 round trips, not 10,000. The answers are at most one
 * batch's rewrap old, and the delivery worker checks each copy again before
 * sending. A check that cannot be made throws (SHARED_STATE_UNAVAILABLE): the
 * message goes back to the queue and nothing of this batch is sent
 * (common/dead-letter.ts). Bench: `npm run bench -- rewrap`.
 */
import type { SuppressionEntry } from '../../suppression.js';
import { NEXT, type Copy, type CopyStep, type MessageContext, type StepOutcome } from '../context.js';

/** Recipients checked per round trip: large enough to amortise it, small enough that the answers stay fresh. */
export const CHECK_BATCH = 500;

interface Checked {
  from: number;
  results: Array<SuppressionEntry | undefined>;
}

const checked = new WeakMap<MessageContext, Checked>();

async function lookup(copy: Copy, msg: MessageContext): Promise<SuppressionEntry | undefined> {
  let c = checked.get(msg);
  if (!c || copy.position < c.from || copy.position >= c.from + c.results.length) {
    const ctl = msg.controls;
    const batch = msg.envelope.rcptTo.slice(copy.position, copy.position + CHECK_BATCH);
    const results = await msg.services.suppression.checkMany(
      msg.settings.accountId,
      batch.map((address) => ({ address, list: ctl.list, stream: ctl.stream })),
    );
    c = { from: copy.position, results };
    checked.set(msg, c);
  }
  return c.results[copy.position - c.from];
}

export const suppression: CopyStep = {
  name: 'suppression',
  async run(copy: Copy, msg: MessageContext): Promise<StepOutcome> {
    const hit = await lookup(copy, msg);
    if (!hit) return NEXT;
    return { kind: 'suppressed', reason: `${hit.reason} (${hit.scope === '*' ? 'account' : hit.scope})` };
  },
};

/*
 * npm run bench — every benchmark, printed as text. Run on a quiet machine;
 * figures in the README were made with this command.
 *   npm run bench            all
 *   npm run bench -- queue   only the named ones (queue, forwarder, forwarder-parts, listener, rewrap, fan-out, e2e, pipeline, feedback, suppress-import, recipients-import, dashboard, events, shared-state, scale, big-messages)
 */
import { benchForwarder } from './forwarder-vs-postfix.js';
import { benchForwarderParts } from './forwarder-parts.js';
import { benchListener } from './listener.js';
import { benchE2e } from './e2e-throughput.js';
import { benchPipeline } from './pipeline.js';
import { benchFanOut } from './fan-out.js';
import { benchEvents } from './events.js';
import { benchFeedback } from './feedback.js';
import { benchQueue } from './queue-group-commit.js';
import { benchRewrap } from './rewrap.js';
import { benchSuppressionImport } from './suppression-import.js';
import { benchDashboard } from './dashboard.js';
import { benchRecipientsImport } from './recipients-import.js';
import { benchScale } from './scale.js';
import { benchBigMessages } from './big-messages.js';
import { benchSharedState } from './shared-state.js';

const benches: Record<string, () => Promise<void>> = {
  queue: benchQueue,
  forwarder: benchForwarder,
  'forwarder-parts': benchForwarderParts,
  listener: benchListener,
  rewrap: benchRewrap,
  'fan-out': benchFanOut,
  e2e: benchE2e,
  pipeline: benchPipeline,
  'suppress-import': benchSuppressionImport,
  'recipients-import': benchRecipientsImport,
  feedback: benchFeedback,
  dashboard: benchDashboard,
  events: benchEvents,
  scale: benchScale,
  'shared-state': benchSharedState,
  'big-messages': benchBigMessages,
};

const wanted = process.argv.slice(2);
for (const w of wanted) if (!(w in benches)) throw new Error(`unknown benchmark "${w}"; known: ${Object.keys(benches).join(', ')}`);
for (const [name, fn] of Object.entries(benches)) {
  if (wanted.length && !wanted.includes(name)) continue;
  console.log(`\n== ${name} ==`);
  await fn();
}

/*
 * parse-controls.ts (message step) — reads our per-message control headers
 * (DESIGN.md, "Per-message control headers") over the account defaults and
 * whatever header-compat.ts mapped:
 *   X-Postino-Stream   transactional|bulk      X-Postino-List   <name>
 *   X-Postino-Tag      <text>                  X-Postino-Metadata  k=v; k2=v2
 *   X-Postino-Track    opens, clicks | none    X-Postino-Footer  on|off
 *   X-Postino-Vars     <JSON object>           X-Postino-Send-At <date> (schedule.ts)
 * Then every control header, ours and the shims header-compat.ts mapped, goes
 * through the validator the listener uses (common/control-headers.ts): a value
 * that no listener check stopped (malformed JSON, a send time out of range, an
 * unknown stream, …) rejects the message with its reason here rather than
 * reaching a step that would throw on it (schedule.ts, merge fields).
 */
import { controlHeaderProblem } from '../../../common/control-headers.js';
import { fieldValue } from '../../../common/mime-header.js';
import { NEXT, type MessageContext, type MessageStep, type StepOutcome } from '../context.js';
import { addPairs, scalar } from './header-compat.js';

/** RFC 2822-ish limit for a list name we put into tokens and keys. */
const MAX_LIST_NAME = 100;

export const parseControls: MessageStep = {
  name: 'parse-controls',
  run(msg: MessageContext): StepOutcome {
    const c = msg.controls;
    for (const f of msg.headers) {
      if (!f.lower.startsWith('x-postino-')) continue;
      const value = fieldValue(f);
      switch (f.lower) {
        case 'x-postino-stream': {
          const v = value.toLowerCase();
          if (v === 'transactional' || v === 'bulk') c.stream = v;
          break;
        }
        case 'x-postino-list':
          if (value) c.list = value.slice(0, MAX_LIST_NAME);
          break;
        case 'x-postino-tag':
          if (value) c.tag = value;
          break;
        case 'x-postino-metadata':
          addPairs(c.metadata, value, ';');
          break;
        case 'x-postino-track': {
          const words = value.toLowerCase().split(/[\s,]+/).filter(Boolean);
          if (words.includes('none')) c.track = { opens: false, clicks: false };
          else if (words.some((w) => w === 'opens' || w === 'clicks')) c.track = { opens: words.includes('opens'), clicks: words.includes('clicks') };
          break;
        }
        case 'x-postino-footer': {
          const v = value.toLowerCase();
          if (v === 'on' || v === 'off') c.footer = v === 'on';
          break;
        }
        case 'x-postino-vars': {
          let parsed: unknown;
          try {
            parsed = JSON.parse(value);
          } catch {
            parsed = undefined;
          }
          if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return { kind: 'rejected', reason: 'X-Postino-Vars is not a JSON object' };
          for (const [k, v] of Object.entries(parsed)) c.vars[k] = scalar(v);
          break;
        }
        case 'x-postino-send-at':
          c.sendAtText = value;
          c.sendAt = undefined;
          break;
      }
    }
    const problem = controlHeaderProblem(msg.headers, msg.now, msg.settings.controlLimits);
    if (problem) return { kind: 'rejected', reason: problem };
    return NEXT;
  },
};

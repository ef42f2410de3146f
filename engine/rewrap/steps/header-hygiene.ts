/*
 * header-hygiene.ts (copy step) — what the recipient must not see, and what
 * must be fixed before delivery:
 *   - every X-Postino-* header is removed except `engine.passthroughHeaders`;
 *     so are the other relays' control headers (header-compat.ts);
 *   - a Subject sent raw with 8-bit bytes (a common application bug) is
 *     re-encoded as RFC 2047 encoded-words, lines at most 76 characters, in
 *     time linear in its length (a 1 MB raw Subject held the thread ~1 s
 *     through nodemailer's encoder: common/mime-header.ts unstructuredField).
 */
import { getHeader, unstructuredField } from '../../../common/mime-header.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';
import { isCompatHeader } from './header-compat.js';

const passCache = new WeakMap<readonly string[], Set<string>>();

export const headerHygiene: CopyStep = {
  name: 'header-hygiene',
  async run(copy: Copy, msg: MessageContext) {
    const list = msg.settings.passthroughHeaders;
    let pass = passCache.get(list);
    if (!pass) {
      pass = new Set(list.map((h) => h.toLowerCase()));
      passCache.set(list, pass);
    }
    const keep = pass;
    copy.removeHeaders((h) => (h.startsWith('x-postino-') && !keep.has(h)) || isCompatHeader(h));
    const at = copy.headers.findIndex((f) => f.lower === 'subject');
    if (at >= 0 && copy.headers[at]!.raw.some((b) => b > 0x7f)) {
      copy.headers[at] = await unstructuredField('Subject', getHeader(copy.headers, 'subject')!);
    }
    return NEXT;
  },
};

/*
 * next-turn.ts — one turn of the event loop (setImmediate: it resolves in the
 * check phase, after the I/O callbacks the poll phase had ready; a resolved
 * promise would continue before any I/O).
 * Who waits for it, and why:
 *   - the rewrap, which runs on the thread that serves SMTP and HTTP: a scan over
 *     a large part awaits this between slices of work (a few ms each), so no
 *     message holds the thread for long (issue #11: the event loop blocked ~35 s
 *     on crafted boundaries);
 *   - store.ts, before it takes a group of unsynced writes: by then every
 *     callback of the poll phase has added its own (issue #17).
 * Side effects: none.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

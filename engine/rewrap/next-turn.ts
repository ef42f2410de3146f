/*
 * next-turn.ts — one turn of the event loop. The rewrap runs on the thread
 * that serves SMTP and HTTP: a scan over a large part awaits this between
 * slices of work (a few ms each), so no message holds the thread for long
 * (issue #11: the event loop blocked ~35 s on crafted boundaries).
 * setImmediate, not a resolved promise: a promise continues before I/O.
 * Side effects: none.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

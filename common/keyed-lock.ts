/*
 * keyed-lock.ts — runs async sections one at a time per key (an address, a
 * queue id), so a read-decide-write sequence such as "unsubscribe unless
 * already unsubscribed" writes one event however many requests race for it.
 * In-process only: one hosted node owns its LevelDB.
 *
 * Side effects: none.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, section: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const mine = before.then(section, section);
    const tail = mine.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await mine;
    } finally {
      // The last one out removes the key, so the map holds only keys with work in progress.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

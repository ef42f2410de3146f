/*
 * A real LevelDB store and durable queue in a temporary folder, for unit tests
 * of what consumes a queue (worker loop, delivery scheduler). The caller stops
 * its consumer, then closes the store.
 */
import { DurableQueue } from '../../common/durable-queue.js';
import { createLogger, type Logger } from '../../common/log.js';
import { Store } from '../../common/store.js';
import { tempDir } from './postino.js';

export const silentLog: Logger = createLogger('test', process.env.POSTINO_TEST_LOG ?? 'silent');

export async function tempQueue<M>(name: string, clock: () => number): Promise<{ store: Store; q: DurableQueue<M> }> {
  const store = await Store.open(tempDir(name));
  const q = await DurableQueue.open<M>(store, name, { clock });
  return { store, q };
}

/*
 * relay-pause.ts — the forwarder's kill-switch: stop all outbound relaying at
 * once, keep spooling. (The engine's is engine/delivery/delivery-pause.ts.)
 *
 * `pause()` stops the relay loop from starting any new transaction; a
 * transaction already started (at most relay.maxConnections × 4 messages,
 * leased before the pause) is allowed to FINISH, not aborted: aborting after
 * the final dot would leave its outcome unknown and cause a duplicate, and
 * each one is bounded by relay.timeoutSeconds (in practice milliseconds).
 * With `intake: true` new SMTP connections and new transactions get
 * `421 4.3.2` as well. `resume()` starts relaying again (and reopens intake).
 *
 * The state is persisted with a synced LevelDB write before the call returns,
 * so a forwarder restarted while paused stays paused.
 *
 * Key: state!kill-switch in the forwarder store.
 * Side effects: LevelDB writes; starts/pauses the relay loop.
 */
import type { Logger } from '../common/log.js';
import type { Store } from '../common/store.js';

const KEY = 'state!kill-switch';

export interface RelayPauseState {
  relayPaused: boolean;
  intakePaused: boolean;
  /** ISO time of the last change. */
  since: string | null;
}

export interface Relaying {
  start(): void;
  pause(): void;
}

export class RelayPause {
  private constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private s: RelayPauseState,
  ) {}

  static async load(store: Store, log: Logger): Promise<RelayPause> {
    const v = await store.db.get(KEY);
    const s: RelayPauseState = v ? (JSON.parse(v.toString('utf8')) as RelayPauseState) : { relayPaused: false, intakePaused: false, since: null };
    if (s.relayPaused) log.warn({ event: 'paused', intake: s.intakePaused, since: s.since }, 'relaying is paused (kill-switch); `postino forwarder resume` restarts it');
    return new RelayPause(store, log, s);
  }

  get state(): RelayPauseState {
    return { ...this.s };
  }

  get relayPaused(): boolean {
    return this.s.relayPaused;
  }

  get intakePaused(): boolean {
    return this.s.intakePaused;
  }

  /** Applies the current state to the relay loop (at start). */
  apply(relay: Relaying): void {
    if (this.s.relayPaused) relay.pause();
    else relay.start();
  }

  async pause(relay: Relaying, opts: { intake: boolean }): Promise<RelayPauseState> {
    relay.pause(); // first: the switch acts before the disk write returns
    await this.save({ relayPaused: true, intakePaused: opts.intake, since: new Date().toISOString() });
    this.log.warn({ event: 'paused', intake: opts.intake }, opts.intake ? 'kill-switch: relaying and intake paused' : 'kill-switch: relaying paused, intake keeps spooling');
    return this.state;
  }

  async resume(relay: Relaying): Promise<RelayPauseState> {
    await this.save({ relayPaused: false, intakePaused: false, since: new Date().toISOString() });
    relay.start();
    this.log.info({ event: 'resumed' }, 'kill-switch released: relaying resumed');
    return this.state;
  }

  private async save(s: RelayPauseState): Promise<void> {
    this.s = s;
    await this.store.commit([{ type: 'put', key: KEY, value: Buffer.from(JSON.stringify(s)) }], { sync: true });
  }
}

/*
 * group-statement.ts — many callers' small requests as one PostgreSQL
 * statement, the way a database groups commits: the first request goes out at
 * once (no added latency on an idle node); requests that arrive while
 * statements are in flight wait and go out together as the next one. Under load
 * (20 SMTP sessions finishing DATA on one node) a round trip then serves many
 * messages instead of one — issue #14: "no per-message round trip that a batch
 * can do".
 *
 * `exec` gets the waiting requests (at most `maxBatch`) and returns one answer
 * per request, in order; if it throws, every request of that batch fails with
 * that error (the callers' own error handling — parking, 451 — applies as if
 * each had made the statement alone).
 *
 * Side effects: none of its own; `exec` talks to PostgreSQL.
 */

interface Waiting<Q, R> {
  q: Q;
  resolve(r: R): void;
  reject(err: unknown): void;
}

export interface GroupStatementOptions {
  /** Requests per statement: bounds the statement's parameters and one batch's latency. */
  maxBatch?: number;
  /**
   * Statements in flight at once. 2: a new batch forms while one is on the wire, and a batch
   * never waits for more than one round trip; more would only shrink the batches.
   */
  maxInFlight?: number;
}

export class GroupStatement<Q, R> {
  private waiting: Array<Waiting<Q, R>> = [];
  private inFlight = 0;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;

  constructor(
    private readonly exec: (requests: Q[]) => Promise<R[]>,
    opts: GroupStatementOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 500;
    this.maxInFlight = opts.maxInFlight ?? 2;
  }

  run(q: Q): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ q, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.maxBatch);
      this.inFlight++;
      this.exec(batch.map((w) => w.q)).then(
        (answers) =>
          answers.length === batch.length ? this.settle(batch, answers) : this.settle(batch, undefined, new Error(`group statement answered ${answers.length} of ${batch.length} requests`)),
        (err: unknown) => this.settle(batch, undefined, err),
      );
    }
  }

  /** The slot is free before the callers hear back, so a request made on the answer queues behind nothing stale. */
  private settle(batch: Array<Waiting<Q, R>>, answers: R[] | undefined, err?: unknown): void {
    this.inFlight--;
    if (answers) batch.forEach((w, i) => w.resolve(answers[i]!));
    else batch.forEach((w) => w.reject(err));
    this.pump();
  }
}

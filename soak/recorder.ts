// Where workers report: each finished operation goes into three windows (the 5 s sample, the
// current row of the markdown table, the whole run) and each error into the error log, classified
// as expected or unexpected against the replica restarts so far (errors.ts). The first few
// occurrences of each unexpected error are logged as they happen.

import { classifyError, errorExample, errorKey, ErrorLog, type TimeWindow } from './errors.ts';
import type { WorkKind } from './kinds.ts';
import { OpWindow, type OpOutcome } from './op-window.ts';

const LOGGED_PER_KEY = 3;

export class SoakRecorder {
  readonly sample = new OpWindow();
  readonly row = new OpWindow();
  readonly run = new OpWindow();
  readonly errors = new ErrorLog();
  /** Replica restarts: from the stop until the replica accepts logins again (null while down). */
  readonly restarts: TimeWindow[] = [];
  readonly #startMs: number;
  readonly #graceMs: number;
  readonly #log: (line: string) => void;
  readonly #logged = new Map<string, number>();

  constructor(startMs: number, graceMs: number, log: (line: string) => void) {
    this.#startMs = startMs;
    this.#graceMs = graceMs;
    this.#log = log;
  }

  #each(record: (window: OpWindow) => void): void {
    record(this.sample);
    record(this.row);
    record(this.run);
  }

  /** A completed, checked operation, and the errors it caused on purpose along the way. */
  ok(kind: WorkKind, latencyMs: number, expectedErrors = 0): void {
    this.#each((window) => {
      window.record(kind, 'ok', latencyMs);
      for (let count = 0; count < expectedErrors; count++) window.expectedError(kind);
    });
  }

  /** An operation that failed; returns how it was classified. */
  failed(kind: WorkKind, error: unknown, startMs: number, endMs: number): Exclude<OpOutcome, 'ok'> {
    const outcome = classifyError(error, { startMs, endMs, restarts: this.restarts, graceMs: this.#graceMs });
    this.#each((window) => window.record(kind, outcome, endMs - startMs));
    const key = errorKey(error);
    const atS = (endMs - this.#startMs) / 1000;
    const example = outcome === 'unexpected' ? errorExample(error) : null;
    this.errors.add(kind, outcome, key, atS, example);
    if (example !== null) {
      const seen = (this.#logged.get(`${kind} ${key}`) ?? 0) + 1;
      this.#logged.set(`${kind} ${key}`, seen);
      if (seen <= LOGGED_PER_KEY) this.#log(`unexpected error at ${atS.toFixed(1)} s in ${kind}: ${seen === 1 ? example : key}`);
    }
    return outcome;
  }
}

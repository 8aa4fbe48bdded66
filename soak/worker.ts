// One worker: a kind of work run step after step until the stop signal, each step timed and
// reported to the recorder. A step that throws is classified there and followed by reset(), which
// drops the worker's connections so the next step starts on fresh ones; a step that does not
// settle within STEP_TIMEOUT_MS is a hang and counts as an unexpected error (the deadline is
// minutes, far above any step on a slow machine: latency is measured, not judged). The step in
// progress when the stop comes is finished, then close() ends the connections.

import { setTimeout as sleep } from 'node:timers/promises';

import { OperationTimeout } from './errors.ts';
import type { WorkKind } from './kinds.ts';
import type { SoakRecorder } from './recorder.ts';

export const STEP_TIMEOUT_MS = 120_000;

export interface Work {
  readonly kind: WorkKind;
  /** One operation, checked. Resolves with the number of errors it caused on purpose and saw (its own disconnects). */
  step(): Promise<number | void>;
  /** After a failed step: drop the connections so the next step starts clean. Never throws. */
  reset(): Promise<void>;
  /** At the end: close the connections. Never throws. */
  close(): Promise<void>;
  /** How long to pause after a step, ms (think time; keeps the load from saturating 2 CPUs). */
  pauseMs(): number;
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new OperationTimeout(`${what}: no answer within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export async function runWorker(work: Work, recorder: SoakRecorder, stop: AbortSignal, stepTimeoutMs = STEP_TIMEOUT_MS): Promise<void> {
  while (!stop.aborted) {
    const startMs = Date.now();
    const started = performance.now();
    try {
      const expectedErrors = await withTimeout(work.step(), stepTimeoutMs, `${work.kind} step`);
      recorder.ok(work.kind, performance.now() - started, expectedErrors ?? 0);
    } catch (error) {
      recorder.failed(work.kind, error, startMs, Date.now());
      await work.reset();
    }
    await sleep(work.pauseMs(), undefined, { signal: stop }).catch(() => {});
  }
  await work.close();
}

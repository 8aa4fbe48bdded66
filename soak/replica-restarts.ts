// The replica restarts: replica 1 at RESTART_FRACTIONS[0] of the run and the next replica (or the
// same one, with a single replica) at RESTART_FRACTIONS[1]; both inside the middle third of the
// samples after warm-up (verdict.ts), so the growth windows compare steady load. A restart is a
// fast shutdown of the replica's postmaster (its backends terminate: clients reading there get
// 57P01 or a retry elsewhere), DOWN_MS with it stopped (reads must go to the other hosts), then a
// start that waits until it accepts logins. Each restart is a TimeWindow in the recorder, which
// makes lost-connection errors of overlapping operations expected (errors.ts).

import { setTimeout as sleep } from 'node:timers/promises';

import type { LocalCluster } from '../src/demo/cluster.ts';
import type { TimeWindow } from './errors.ts';

export const RESTART_FRACTIONS = [0.5, 0.65] as const;
export const DOWN_MS = 3000;
/** After the replica is back, how long lost-connection errors are still expected: failureThreshold (3) probes of 1 s, and slack. */
export const RESTART_GRACE_MS = 10_000;

export interface PlannedRestart {
  /** Index into cluster.replicas. */
  replica: number;
  atS: number;
}

/** When each restart happens, in seconds into a run of `durationS`. Pure. */
export function planRestarts(durationS: number, replicas: number): PlannedRestart[] {
  if (replicas < 1) return [];
  return RESTART_FRACTIONS.map((fraction, index) => ({ replica: index % replicas, atS: durationS * fraction }));
}

export interface RestartEvent {
  replica: string;
  stopS: number;
  /** When it accepted logins again, or null when the start failed. */
  backS: number | null;
  error: string | null;
}

/** Runs the plan against the cluster; resolves with what happened. Stops early (between restarts) on abort. */
export async function runRestarts(
  plan: readonly PlannedRestart[],
  cluster: LocalCluster,
  startMs: number,
  windows: TimeWindow[],
  signal: AbortSignal,
  log: (line: string) => void,
): Promise<RestartEvent[]> {
  const events: RestartEvent[] = [];
  for (const { replica: index, atS } of plan) {
    const waitMs = startMs + atS * 1000 - Date.now();
    if (waitMs > 0) await sleep(waitMs, undefined, { signal }).catch(() => {});
    if (signal.aborted) break;
    const replica = cluster.replicas[index]!;
    const window: TimeWindow = { fromMs: Date.now(), toMs: null };
    windows.push(window);
    const event: RestartEvent = { replica: replica.name, stopS: (window.fromMs - startMs) / 1000, backS: null, error: null };
    events.push(event);
    log(`restart: stopping ${replica.name} (fast) at ${event.stopS.toFixed(1)} s`);
    try {
      await replica.stop({ mode: 'fast', timeoutMs: 30_000 });
      await sleep(DOWN_MS);
      await replica.start({ timeoutMs: 60_000 });
      window.toMs = Date.now();
      event.backS = (window.toMs - startMs) / 1000;
      log(`restart: ${replica.name} accepts logins again at ${event.backS.toFixed(1)} s`);
    } catch (error) {
      window.toMs = Date.now();
      event.error = (error as Error).message;
      log(`restart: ${replica.name} failed: ${event.error.split('\n')[0]}`);
    }
  }
  return events;
}

// The soak's verdict. Growth: the first WARMUP_FRACTION of the run is warm-up (pools fill, caches
// and the heap settle); the samples after it are cut in thirds, and the median of the last third
// is compared with the median of the first ("after warm-up"). No growth means
//   RSS      last <= after warm-up x (1 + 10%)
//   fds      last <= after warm-up + 5
//   handles  last <= after warm-up + 5   (Node active handles from /metrics, when scraped)
// The replica restarts are planned in the middle third, so both compared windows are steady load
// and the last one also shows whether a restart left something behind. Besides growth the verdict
// fails on any unexpected error, on client sockets still open in the ambassador after every
// client has closed, on rows of transactions that were never committed, and on problems of the
// run itself (a restart that failed, workers that did not stop, no reads on the replicas).
// Latency is reported, never judged (the machine is shared). Pure; unit-tested.

import { median } from '../bench/ratios.ts';

export const WARMUP_FRACTION = 0.2;
export const TOLERANCE = { rssRelative: 0.1, fdsAbsolute: 5, handlesAbsolute: 5 } as const;

/** What the growth checks read from a sample. */
export interface ResourcePoint {
  /** Seconds since the load started. */
  tS: number;
  rssBytes: number;
  fds: number;
  /** Node active handles (nodejs_active_handles_total), null when /metrics could not be read. */
  activeHandles: number | null;
}

export interface Window {
  fromS: number;
  toS: number;
  samples: number;
  rssBytes: number;
  fds: number;
  activeHandles: number | null;
}

export interface GrowthCheck {
  metric: 'rss' | 'fds' | 'activeHandles';
  afterWarmup: number;
  last: number;
  limit: number;
  ok: boolean;
}

export interface Growth {
  warmupEndS: number;
  afterWarmup: Window | null;
  last: Window | null;
  checks: GrowthCheck[];
  /** Why there is no comparison (too few samples), or null. */
  problem: string | null;
  ok: boolean;
}

/** Median of a non-empty list. */
function medianOf(values: readonly number[]): number {
  const value = median(values);
  if (value === null) throw new Error('median of nothing');
  return value;
}

function windowOf(points: readonly ResourcePoint[]): Window {
  const handles = points.map((point) => point.activeHandles).filter((value): value is number => value !== null);
  return {
    fromS: points[0]!.tS,
    toS: points[points.length - 1]!.tS,
    samples: points.length,
    rssBytes: medianOf(points.map((point) => point.rssBytes)),
    fds: medianOf(points.map((point) => point.fds)),
    // Only when most samples have it: a median of a few would compare unlike windows.
    activeHandles: handles.length * 2 > points.length ? medianOf(handles) : null,
  };
}

/** The first and last third of the samples taken after warm-up (tS > warmupEndS). */
export function growthWindows(points: readonly ResourcePoint[], durationS: number): { warmupEndS: number; first: ResourcePoint[]; last: ResourcePoint[] } {
  const warmupEndS = durationS * WARMUP_FRACTION;
  const after = points.filter((point) => point.tS > warmupEndS && point.tS <= durationS);
  const third = Math.floor(after.length / 3);
  return { warmupEndS, first: after.slice(0, third), last: after.slice(after.length - third) };
}

export function growthVerdict(points: readonly ResourcePoint[], durationS: number): Growth {
  const { warmupEndS, first, last } = growthWindows(points, durationS);
  if (first.length === 0) {
    const problem = `too few samples after warm-up (${warmupEndS.toFixed(0)} s) to compare thirds: need at least 3`;
    return { warmupEndS, afterWarmup: null, last: null, checks: [], problem, ok: false };
  }
  const before = windowOf(first);
  const after = windowOf(last);
  const check = (metric: GrowthCheck['metric'], from: number, to: number, limit: number): GrowthCheck => ({ metric, afterWarmup: from, last: to, limit, ok: to <= limit });
  const checks = [
    check('rss', before.rssBytes, after.rssBytes, before.rssBytes * (1 + TOLERANCE.rssRelative)),
    check('fds', before.fds, after.fds, before.fds + TOLERANCE.fdsAbsolute),
  ];
  if (before.activeHandles !== null && after.activeHandles !== null) {
    checks.push(check('activeHandles', before.activeHandles, after.activeHandles, before.activeHandles + TOLERANCE.handlesAbsolute));
  }
  return { warmupEndS, afterWarmup: before, last: after, checks, problem: null, ok: checks.every((item) => item.ok) };
}

export interface VerdictInputs {
  growth: Growth;
  unexpectedErrors: number;
  /** Client sockets of the ambassador still open after every client closed, or null if unknown. */
  clientSocketsLeft: number | null;
  /** Rows of transactions that never committed (rolled back, or cut by a disconnect), found at the end. */
  uncommittedRowsFound: number | null;
  /** Why the ambassador is gone (it died during the run), or null. */
  ambassadorDied: string | null;
  /** Anything else that makes the run invalid (a replica restart that failed, workers that did not stop, no reads on the replicas). */
  problems: readonly string[];
}

export interface Verdict {
  ok: boolean;
  reasons: string[];
}

/** Every reason the soak fails; ok when there is none. */
export function soakVerdict(inputs: VerdictInputs): Verdict {
  const reasons: string[] = [];
  if (inputs.ambassadorDied !== null) reasons.push(`the ambassador died: ${inputs.ambassadorDied.split('\n')[0]}`);
  const { growth } = inputs;
  if (growth.problem !== null) reasons.push(growth.problem);
  for (const check of growth.checks) {
    if (check.ok) continue;
    const show = (value: number): string => (check.metric === 'rss' ? `${(value / 2 ** 20).toFixed(1)} MiB` : value.toFixed(1));
    reasons.push(`${check.metric} grew: median ${show(check.afterWarmup)} after warm-up, ${show(check.last)} in the last third (limit ${show(check.limit)})`);
  }
  if (inputs.unexpectedErrors > 0) reasons.push(`${inputs.unexpectedErrors} unexpected error(s)`);
  if (inputs.clientSocketsLeft === null) reasons.push('client sockets after the load: not measured');
  else if (inputs.clientSocketsLeft > 0) reasons.push(`${inputs.clientSocketsLeft} client socket(s) still open in the ambassador after every client closed`);
  if (inputs.uncommittedRowsFound === null) reasons.push('rows of uncommitted transactions: not checked');
  else if (inputs.uncommittedRowsFound > 0) reasons.push(`${inputs.uncommittedRowsFound} row(s) of transactions that never committed are in the table`);
  reasons.push(...inputs.problems);
  return { ok: reasons.length === 0, reasons };
}

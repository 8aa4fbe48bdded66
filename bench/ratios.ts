// Per-round ratios between runs that ran back to back. Every ratio here pairs runs of the same
// round (same workload and mode; same client count unless it is the client count being
// compared), skips rounds where either run failed or lacks the number, and is summarised as the
// median of the per-round values, never as a ratio of medians. Pure, unit-tested.
//
// - pairRatios: numerator / denominator of one metric (tps, CPU µs per transaction, p99 latency).
// - addedLatencyRatios: (numerator - reference) / (denominator - reference) of mean latency: how
//   much latency one proxy adds over direct Postgres relative to another. A round where the
//   denominator adds nothing (<= 0 µs) has no meaningful ratio and is skipped.
// - scalingRatios: one target's tps at a higher client count / at a lower one.

import type { RunRow } from './report.ts';

export type RatioMetric = 'tps' | 'cpuUsPerTxn' | 'userCpuUsPerTxn' | 'latencyP99Ms' | 'latencyMeanMs';

/** Median of the values (mean of the middle two for an even count); null when empty. */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function roundsOf(rows: readonly RunRow[]): number[] {
  return [...new Set(rows.map((row) => row.round))].sort((a, b) => a - b);
}

/** The metric of `target`'s ok run in `round`, or null. */
function valueIn(rows: readonly RunRow[], round: number, target: string, metric: RatioMetric): number | null {
  const row = rows.find((candidate) => candidate.round === round && candidate.target === target);
  return row?.ok ? row[metric] : null;
}

/** numerator/denominator of `metric` for each round in which both ran ok and have it, in round order (rows of one group). */
export function pairRatios(rows: readonly RunRow[], numerator: string, denominator: string, metric: RatioMetric = 'tps'): number[] {
  const ratios: number[] = [];
  for (const round of roundsOf(rows)) {
    const top = valueIn(rows, round, numerator, metric);
    const bottom = valueIn(rows, round, denominator, metric);
    if (top !== null && bottom) ratios.push(top / bottom);
  }
  return ratios;
}

/**
 * Per round, (numerator - reference) / (denominator - reference) of the mean latency (rows of one
 * group): the latency the numerator adds over the reference, relative to what the denominator adds.
 */
export function addedLatencyRatios(rows: readonly RunRow[], numerator: string, denominator: string, reference: string): number[] {
  const ratios: number[] = [];
  for (const round of roundsOf(rows)) {
    const top = valueIn(rows, round, numerator, 'latencyMeanMs');
    const bottom = valueIn(rows, round, denominator, 'latencyMeanMs');
    const base = valueIn(rows, round, reference, 'latencyMeanMs');
    if (top === null || bottom === null || base === null || bottom - base <= 0) continue;
    ratios.push((top - base) / (bottom - base));
  }
  return ratios;
}

/** Per round, `target`'s tps at `toClients` / at `fromClients` (rows of one workload and mode). */
export function scalingRatios(rows: readonly RunRow[], target: string, fromClients: number, toClients: number): number[] {
  const mine = rows.filter((row) => row.target === target);
  const at = (clients: number): RunRow[] => mine.filter((row) => row.clients === clients);
  return pairRatios(
    [...at(toClients).map((row) => ({ ...row, target: 'to' })), ...at(fromClients).map((row) => ({ ...row, target: 'from' }))],
    'to',
    'from',
  );
}

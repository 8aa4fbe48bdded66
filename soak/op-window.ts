// Operations of one time window, per kind of work: completed operations, expected and unexpected
// errors, and the latencies of the completed operations, summarised as p50/p99/max when the window
// closes (nearest-rank percentiles, bench/latency.ts). The soak keeps three: the 5 s sample, the
// row of the markdown table, and the whole run. Pure; unit-tested.

import { percentile } from '../bench/latency.ts';
import { WORK_KINDS, type WorkKind } from './kinds.ts';

export type OpOutcome = 'ok' | 'expected' | 'unexpected';

export interface KindSummary {
  /** Operations completed and checked. */
  ops: number;
  /** Errors caused on purpose (a client's own disconnect, a replica restart in progress). */
  expectedErrors: number;
  /** Every other error, wrong answers included. */
  unexpectedErrors: number;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

export type WindowSummary = Record<WorkKind, KindSummary>;

interface KindCounts {
  latencies: number[];
  expected: number;
  unexpected: number;
}

function emptyCounts(): Record<WorkKind, KindCounts> {
  return Object.fromEntries(WORK_KINDS.map((kind): [WorkKind, KindCounts] => [kind, { latencies: [], expected: 0, unexpected: 0 }])) as Record<WorkKind, KindCounts>;
}

export class OpWindow {
  #counts = emptyCounts();

  /**
   * One finished operation. `ok` counts an operation and its latency; an operation that completed
   * after a failure it caused on purpose (a disconnect) is recorded as `ok` plus expectedError().
   */
  record(kind: WorkKind, outcome: OpOutcome, latencyMs: number): void {
    const counts = this.#counts[kind];
    if (outcome === 'ok') counts.latencies.push(latencyMs);
    else if (outcome === 'expected') counts.expected++;
    else counts.unexpected++;
  }

  /** An expected error that did not end an operation (the client saw the disconnect it caused). */
  expectedError(kind: WorkKind): void {
    this.#counts[kind].expected++;
  }

  /** Summarises the window and starts a new, empty one. */
  close(): WindowSummary {
    const counts = this.#counts;
    this.#counts = emptyCounts();
    return Object.fromEntries(WORK_KINDS.map((kind) => [kind, summarize(counts[kind])])) as WindowSummary;
  }
}

function summarize(counts: KindCounts): KindSummary {
  const sorted = Float64Array.from(counts.latencies).sort();
  return {
    ops: sorted.length,
    expectedErrors: counts.expected,
    unexpectedErrors: counts.unexpected,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length === 0 ? null : sorted[sorted.length - 1]!,
  };
}

/** Sums over the kinds of a window. */
export function windowTotals(summary: WindowSummary): { ops: number; expectedErrors: number; unexpectedErrors: number } {
  let ops = 0;
  let expectedErrors = 0;
  let unexpectedErrors = 0;
  for (const kind of WORK_KINDS) {
    ops += summary[kind].ops;
    expectedErrors += summary[kind].expectedErrors;
    unexpectedErrors += summary[kind].unexpectedErrors;
  }
  return { ops, expectedErrors, unexpectedErrors };
}

// Run rows for the bench's report, markdown and goal tests: a run of `target` with `tps` (null: a
// failed run) and numbers derived from it, which `extra` overrides.

import type { RunRow } from '../../../bench/report.ts';

export function row(round: number, target: string, tps: number | null, extra: Partial<RunRow> = {}): RunRow {
  return {
    round, target, workload: 'select-only', mode: 'simple', clients: 32, threads: 2, durationS: 5, startedAt: '2025-01-01T00:00:00Z',
    ok: tps !== null, problem: tps === null ? '1 client(s) aborted' : null,
    tps, latencyAvgMs: tps ? 32_000 / tps : null, latencyMeanMs: tps ? 32_000 / tps : null, latencyP99Ms: tps ? 100_000 / tps : null,
    initialConnectionMs: 10, transactions: tps ? tps * 5 : 0,
    failedTransactions: 0, abortedClients: tps === null ? 1 : 0, cpuSeconds: null, cpuUsPerTxn: null, userCpuUsPerTxn: null, rssBytes: null,
    serverCpuUsPerTxn: null, serverUserCpuUsPerTxn: null, idlePercent: null, loadAvg1: 1.5,
    stderr: tps === null ? 'pgbench: error: client 3 script 0 aborted in command 1 query 0: ERROR:  boom' : null,
    ...extra,
  };
}

export const COMPARED = [
  { numerator: 'ambassador', denominator: 'direct', note: 'session vs none' },
  { numerator: 'ambassador-txn', denominator: 'pgbouncer', note: 'same pool mode (transaction)' },
  { numerator: 'ambassador-txn', denominator: 'pgbouncer-session', note: 'txn vs session' },
];

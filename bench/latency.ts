// Per-transaction latencies from pgbench's -l logs: mean and p99 of one run. pgbench writes one
// line per transaction, `client_id transaction_no time script_no time_epoch time_us [schedule_lag]
// [retries]`, where `time` is the transaction's elapsed time in microseconds, or `failed` /
// `skipped` for a transaction that did not complete; with -j N each thread writes its own file
// (`<prefix>.<pid>` and `<prefix>.<pid>.<thread>`).
//
// The run's CPU and RSS are read before any log is parsed (run order in runs.ts), so parsing costs
// nothing in the proxy's CPU reading. The p99 is the nearest-rank percentile: the smallest
// latency that at least 99% of the transactions do not exceed. parseTransactionLog and the
// statistics are pure; readLatencyLogs reads a run's directory and removes it.

import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

export interface TransactionLog {
  /** Elapsed time of each completed transaction, µs, in log order. */
  latenciesUs: number[];
  /** Transactions logged as `failed` or `skipped`. */
  notCompleted: number;
  /** Lines that are not a transaction line (should be 0; counted, not fatal). */
  malformed: number;
}

export interface LatencyStats {
  /** Completed transactions in the logs. */
  transactions: number;
  notCompleted: number;
  meanMs: number | null;
  p99Ms: number | null;
}

/** Appends the latencies of one log file's text to `into` (so a run's files share one array). */
export function parseTransactionLog(text: string, into: TransactionLog = { latenciesUs: [], notCompleted: 0, malformed: 0 }): TransactionLog {
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const fields = line.split(' ');
    const time = fields[2];
    if (fields.length < 6 || time === undefined) into.malformed++;
    else if (time === 'failed' || time === 'skipped') into.notCompleted++;
    else {
      const us = Number(time);
      if (Number.isFinite(us) && us >= 0 && time !== '') into.latenciesUs.push(us);
      else into.malformed++;
    }
  }
  return into;
}

/** Nearest-rank percentile (0 < p <= 100) of ascending `sorted`; null when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Mean and p99 in ms of latencies in µs. */
export function latencyStats(log: TransactionLog): LatencyStats {
  const { latenciesUs } = log;
  const count = latenciesUs.length;
  if (count === 0) return { transactions: 0, notCompleted: log.notCompleted, meanMs: null, p99Ms: null };
  let sum = 0;
  for (const us of latenciesUs) sum += us;
  const sorted = Float64Array.from(latenciesUs).sort();
  return { transactions: count, notCompleted: log.notCompleted, meanMs: sum / count / 1000, p99Ms: percentile(sorted, 99)! / 1000 };
}

/** Parses every log file under `dir` whose name starts with `prefixName`, then removes `dir`. */
export function readLatencyLogs(dir: string, prefixName: string): LatencyStats & { files: number; malformed: number } {
  try {
    const files = readdirSync(dir).filter((name) => name.startsWith(`${prefixName}.`));
    const log: TransactionLog = { latenciesUs: [], notCompleted: 0, malformed: 0 };
    for (const file of files) parseTransactionLog(readFileSync(path.join(dir, file), 'latin1'), log);
    return { ...latencyStats(log), files: files.length, malformed: log.malformed };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

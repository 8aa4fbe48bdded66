// Per-transaction latencies from pgbench's -l log: the line format, failed and skipped
// transactions, the nearest-rank p99, and reading (then removing) a run's log directory.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { latencyStats, parseTransactionLog, percentile, readLatencyLogs } from '../../../bench/latency.ts';

// Shaped like pgbench 15's -l output: client_id transaction_no time script_no time_epoch time_us.
const THREAD_0 = `0 1 812 0 1763870001 123456
1 1 1204 0 1763870001 123999
0 2 640 0 1763870001 124300
`;
// A second thread's file; one failed transaction, one with --rate's schedule_lag column.
const THREAD_1 = `2 1 955 0 1763870001 123500
3 1 failed 0 1763870001 123700
2 2 700 0 1763870001 124400 35
`;

test('the time column in µs is collected; failed and skipped transactions are counted apart; junk is counted as malformed', () => {
  const log = parseTransactionLog(THREAD_0);
  assert.deepEqual(log.latenciesUs, [812, 1204, 640]);
  parseTransactionLog(THREAD_1, log);
  assert.deepEqual(log.latenciesUs, [812, 1204, 640, 955, 700]);
  assert.equal(log.notCompleted, 1);
  assert.equal(log.malformed, 0);
  const odd = parseTransactionLog('0 1 skipped 0 1 2\nnot a log line\n0 1 x 0 1 2\n\n');
  assert.deepEqual(odd, { latenciesUs: [], notCompleted: 1, malformed: 2 });
});

test('p99 is the nearest rank: the smallest value at least 99% of the transactions do not exceed', () => {
  const hundred = Float64Array.from({ length: 100 }, (_, index) => index + 1);
  assert.equal(percentile(hundred, 99), 99);
  assert.equal(percentile(hundred, 100), 100);
  assert.equal(percentile(hundred, 50), 50);
  const thousandAndOne = Float64Array.from({ length: 1001 }, (_, index) => index + 1);
  assert.equal(percentile(thousandAndOne, 99), 991); // ceil(990.99)
  const oneHundredSixty = Float64Array.from({ length: 160 }, (_, index) => index + 1);
  assert.equal(percentile(oneHundredSixty, 99), 159); // ceil(158.4), not rounded
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 99), null);
});

test('stats: mean and p99 in ms, independent of log order; none without completed transactions', () => {
  // 99 fast transactions and one slow one: the mean feels it, the p99 does not; two slow ones reach the p99.
  const fast = Array.from({ length: 99 }, () => 100);
  const oneSlow = latencyStats({ latenciesUs: [50_000, ...fast], notCompleted: 0, malformed: 0 });
  assert.equal(oneSlow.transactions, 100);
  assert.equal(oneSlow.p99Ms, 0.1);
  assert.ok(Math.abs(oneSlow.meanMs! - (99 * 100 + 50_000) / 100 / 1000) < 1e-12);
  const twoSlow = latencyStats({ latenciesUs: [...fast.slice(1), 50_000, 60_000], notCompleted: 0, malformed: 0 });
  assert.equal(twoSlow.p99Ms, 50);
  assert.deepEqual(latencyStats({ latenciesUs: [], notCompleted: 3, malformed: 0 }), { transactions: 0, notCompleted: 3, meanMs: null, p99Ms: null });
});

test('a run directory: every thread file of the prefix is read, other files ignored, the directory removed', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-latency-test-'));
  writeFileSync(path.join(dir, 'pgbench_log.4242'), THREAD_0);
  writeFileSync(path.join(dir, 'pgbench_log.4242.1'), THREAD_1);
  writeFileSync(path.join(dir, 'other.txt'), '0 1 999999 0 1 2\n');
  const stats = readLatencyLogs(dir, 'pgbench_log');
  assert.equal(stats.files, 2);
  assert.equal(stats.transactions, 5);
  assert.equal(stats.notCompleted, 1);
  assert.equal(stats.p99Ms, 1.204);
  assert.equal(stats.meanMs, (812 + 1204 + 640 + 955 + 700) / 5 / 1000);
  assert.equal(existsSync(dir), false);
});

// The markdown report: the results and comparison tables, scaling and memory tables, the targets
// section, and the problem sections (unavailable and dead targets, failed runs with pgbench's stderr).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { issueGoals } from '../../../bench/goals.ts';
import { renderComparisons, renderMarkdown, renderMemory, renderScaling, renderTable } from '../../../bench/markdown.ts';
import { summarize, summarizeScaling, type BenchReport, type MemoryResult, type RunRow } from '../../../bench/report.ts';
import { COMPARED, row } from './rows.ts';

test('results table: one line per group and target, with the ratio to the baseline, mean and p99 latency, CPU and its user part, the servers\' CPU, idle share, RSS', () => {
  const MiB = 2 ** 20;
  const rows = [
    row(1, 'direct', 2000), row(1, 'ambassador', 900, { cpuUsPerTxn: 40, userCpuUsPerTxn: 12.5, rssBytes: 70 * MiB, latencyMeanMs: 1.25, latencyP99Ms: 4.5, serverCpuUsPerTxn: 61.25, idlePercent: 7.5 }),
    row(2, 'direct', 2000), row(2, 'ambassador', null),
  ];
  const table = renderTable(summarize(rows, 'direct'));
  assert.match(table, /\| select-only \| simple \| 32 \| direct \| 2000 \| baseline \| 16\.000 \| 50\.000 \| – \| – \| – \| – \| – \| 2\/2 \|/);
  assert.match(table, /\| select-only \| simple \| 32 \| ambassador \| 900 \| \*\*0\.450\*\* \(0\.450\) \| 1\.250 \| 4\.500 \| 40\.0 \| 12\.5 \| 61\.3 \| 7\.5 \| 70\.0 \| 1\/2 \|/);
});

test('comparisons table: tps, CPU, user CPU, p99 and (1 client) latency added over direct, each as median (per round)', () => {
  const rows = [
    row(1, 'direct', 1000), row(1, 'ambassador-txn', 600, { cpuUsPerTxn: 60, userCpuUsPerTxn: 30 }), row(1, 'pgbouncer', 800, { cpuUsPerTxn: 20, userCpuUsPerTxn: 8 }),
    row(2, 'direct', 1000), row(2, 'ambassador-txn', null), row(2, 'pgbouncer', 900, { cpuUsPerTxn: 20 }),
    row(1, 'direct', 1000, { clients: 1, latencyMeanMs: 0.1 }), row(1, 'ambassador-txn', 600, { clients: 1, latencyMeanMs: 0.16 }),
    row(1, 'pgbouncer', 800, { clients: 1, latencyMeanMs: 0.15 }),
  ];
  const table = renderComparisons(summarize(rows, 'direct', { comparisons: COMPARED, latencyReference: 'direct' }));
  assert.match(
    table,
    /\| select-only \| simple \| 32 \| ambassador-txn \/ pgbouncer \| \*\*0\.750\*\* \(0\.750; 1 of 2 rounds with both runs ok\) \| \*\*3\.000\*\* \(3\.000\) \| \*\*3\.750\*\* \(3\.750\) \| \*\*1\.333\*\* \(1\.333\) \|  \| same pool mode \(transaction\) \|/,
  );
  assert.match(table, /\| select-only \| simple \| 1 \| ambassador-txn \/ pgbouncer \| \*\*0\.750\*\* \(0\.750\) \| – \| – \| \*\*1\.333\*\* \(1\.333\) \| \*\*1\.200\*\* \(1\.200\) \|/);
});

test('comparisons with no round where both runs are ok say so', () => {
  const [group] = summarize([row(1, 'ambassador-txn', null), row(1, 'pgbouncer', 900)], 'direct', { comparisons: COMPARED });
  assert.match(renderComparisons([group!]), /ambassador-txn \/ pgbouncer \| – \(no round with both runs ok, of 1\)/);
  assert.match(renderComparisons([]), /no comparison/);
});

test('scaling and memory tables', () => {
  const rows = [
    row(1, 'ambassador-txn', 1000), row(1, 'ambassador-txn', 950, { clients: 256 }),
    row(2, 'ambassador-txn', 1000), row(2, 'ambassador-txn', null, { clients: 256, failedTransactions: 4 }),
  ];
  assert.match(renderScaling(summarizeScaling(rows)), /\| select-only \| simple \| ambassador-txn \| 256 vs 32 \| \*\*0\.950\*\* \(0\.950\) \| 1\/2 \| 4 \/ 1 \|/);
  assert.match(renderScaling([]), /no target ran at two client counts/);
  const memory: MemoryResult = {
    target: 'pgbouncer', clients: 10_000, connected: 9_990, failedLogins: 10, errors: ['53300: too many clients'], rssBeforeBytes: 8 * 2 ** 20,
    rssAfterBytes: 16 * 2 ** 20, bytesPerClient: 839.7, connectSeconds: 30.25, problem: '10 of 10000 clients not connected: 53300: too many clients', details: null,
  };
  assert.match(renderMemory([memory]), /\| pgbouncer \| 9990\/10000 \| 8\.0 \| 16\.0 \| 0\.82 \| 30\.3 \| 10 \| 10 of 10000 clients not connected: 53300: too many clients \|/);
});

function report(rows: RunRow[], extra: Partial<BenchReport> = {}): BenchReport {
  const summary = summarize(rows, 'direct', { comparisons: COMPARED });
  const scaling = summarizeScaling(rows);
  return {
    facts: {
      date: '2025-01-01T00:00:00Z', nproc: 2, cpuModel: 'cpu', memoryGiB: 8, kernel: '6', node: 'v20', postgres: '15', pgbench: 'pgbench 15',
      gitCommit: null, loadAvgAtStart: [0.5, 0.4, 0.3],
    },
    settings: {
      durationS: 5, repeats: 2, threads: 2, scale: 10, poolSize: 20, targets: ['direct', 'ambassador-txn', 'pgbouncer'], baseline: 'direct',
      workloads: [{ name: 'select-only', description: 'pgbench -S', kind: 'plain', modes: ['simple'], clients: [32] }], memoryClients: null, notes: ['a note'],
    },
    summary,
    scaling,
    splitCheck: null,
    memory: [],
    goals: issueGoals(summary, scaling, []),
    failedRuns: rows.filter((r) => !r.ok).length,
    unavailableTargets: [],
    deadTargets: [],
    wallTimeS: 42,
    verification: [],
    runs: rows,
    ...extra,
  };
}

test('markdown: targets of issue 9, comparisons, unavailable and dead targets, failed runs with pgbench stderr', () => {
  const rows = [row(1, 'direct', 1000), row(1, 'ambassador-txn', null), row(1, 'pgbouncer', 900)];
  const markdown = renderMarkdown(
    report(rows, {
      unavailableTargets: [{ target: 'pgbouncer-session', reason: 'prepare failed: apt-get install -y pgbouncer failed (exit code 100, signal null)' }],
      deadTargets: [{ target: 'ambassador', reason: 'during round 1 (select-only, -M simple): ambassador (pid 7) died: exit code 1\n{"msg":"crash"}' }],
      verification: [row(0, 'ambassador-txn', null, { problem: '32 client(s) aborted: prepared statement "P0_1" does not exist' })],
    }),
  );
  assert.match(markdown, /## Targets of issue 9\n\n\| target \| measured in \|/);
  assert.match(markdown, /- select-only: pgbench -S \(modes: simple; clients: 32\)/);
  assert.match(markdown, /## Comparisons\n\n\| workload \| mode \|/);
  assert.match(markdown, /ambassador-txn \/ pgbouncer \| – \(no round with both runs ok, of 1\)/);
  assert.match(markdown, /## Unavailable targets \(1\)\n\n- pgbouncer-session: prepare failed: apt-get install/);
  assert.match(markdown, /## Targets that died \(1\)\n\n- ambassador: during round 1 .*\n\n {6}\{"msg":"crash"\}/);
  assert.match(markdown, /## Failed verification runs \(1; .*\n\n- verification ambassador-txn select-only simple 32 clients: 32 client\(s\) aborted: prepared statement "P0_1"/);
  assert.match(markdown, /## Failed runs \(1\)\n\n- round 1 ambassador-txn select-only simple 32 clients: 1 client\(s\) aborted\n\n {6}pgbench stderr:\n {6}pgbench: error: client 3 script 0 aborted/);
  assert.doesNotMatch(markdown, /Idle connections|Split check/);
});

test('markdown of a clean run has no problem sections; the memory section appears when it ran', () => {
  const clean = renderMarkdown(report([row(1, 'direct', 1000), row(1, 'pgbouncer', 900)]));
  assert.doesNotMatch(clean, /Unavailable|died|Failed/);
  assert.match(clean, /Wall time 42 s/);
  const memory: MemoryResult = {
    target: 'ambassador-txn', clients: 100, connected: 100, failedLogins: 0, errors: [], rssBeforeBytes: 0, rssAfterBytes: 1_228_800,
    bytesPerClient: 12_288, connectSeconds: 1, problem: null, details: null,
  };
  const withMemory = renderMarkdown(report([row(1, 'direct', 1000)], { memory: [memory], settings: { ...report([]).settings, memoryClients: 100 } }));
  assert.match(withMemory, /## Idle connections: memory \(100 clients\)\n\n\| target \|/);
  assert.match(withMemory, /\| ambassador-txn \| 100\/100 \| 0\.0 \| 1\.2 \| 12\.00 \|/);
  const split = renderMarkdown(report([row(1, 'direct', 1000)], { splitCheck: { replicaTransactions: 4900, splitReadTransactions: 5000 } }));
  assert.match(split, /Split check: the replicas ran 4900 transactions \(98%\) while ambassador-split processed 5000 in split-select-only/);
});

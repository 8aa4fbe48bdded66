// The bench's arithmetic: medians, per-round ratios against the baseline and between named
// targets, CPU per transaction, /proc parsing, and the markdown report's problem sections.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProcStatTicks, parseVmRssBytes } from '../../../bench/proc.ts';
import {
  cpuMicrosPerTransaction, median, pairRatios, renderComparisons, renderMarkdown, renderTable, summarize, type BenchReport, type RunRow,
} from '../../../bench/report.ts';

function row(round: number, target: string, tps: number | null, extra: Partial<RunRow> = {}): RunRow {
  return {
    round, target, workload: 'select-only', mode: 'simple', clients: 32, threads: 2, durationS: 5, startedAt: '2025-01-01T00:00:00Z',
    ok: tps !== null, problem: tps === null ? '1 client(s) aborted' : null,
    tps, latencyAvgMs: tps ? 32_000 / tps : null, initialConnectionMs: 10, transactions: tps ? tps * 5 : 0,
    failedTransactions: 0, abortedClients: tps === null ? 1 : 0, cpuSeconds: null, cpuUsPerTxn: null, rssBytes: null, loadAvg1: 1.5,
    stderr: tps === null ? 'pgbench: error: client 3 script 0 aborted in command 1 query 0: ERROR:  boom' : null,
    ...extra,
  };
}

test('median: odd and even counts, unsorted input, empty', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.equal(median([]), null);
  const input = [5, 1, 4];
  median(input);
  assert.deepEqual(input, [5, 1, 4], 'input not sorted in place');
});

test('CPU µs per transaction', () => {
  assert.equal(cpuMicrosPerTransaction(2.5, 100_000), 25);
  assert.equal(cpuMicrosPerTransaction(null, 100_000), null);
  assert.equal(cpuMicrosPerTransaction(1, 0), null);
});

test('ratios pair each round with the baseline of the same round, skipping failed runs', () => {
  const rows = [
    row(1, 'direct', 1000), row(1, 'ambassador', 500),
    row(2, 'direct', 2000), row(2, 'ambassador', 1500),
    row(3, 'direct', 1000), row(3, 'ambassador', null),
    row(4, 'direct', null), row(4, 'ambassador', 900),
  ];
  assert.deepEqual(pairRatios(rows, 'ambassador', 'direct'), [0.5, 0.75]);
});

test('summary: median of per-round ratios (not ratio of medians), CPU and RSS of ok runs only', () => {
  const MiB = 2 ** 20;
  const rows = [
    row(1, 'direct', 1000), row(1, 'ambassador', 900, { cpuUsPerTxn: 30, rssBytes: 60 * MiB }),
    row(2, 'direct', 3000), row(2, 'ambassador', 600, { cpuUsPerTxn: 50, rssBytes: 70 * MiB }),
    row(3, 'direct', 2000), row(3, 'ambassador', 1000, { cpuUsPerTxn: 40, rssBytes: 65 * MiB }),
    row(4, 'direct', 2000), row(4, 'ambassador', null, { cpuUsPerTxn: 999, rssBytes: 999 * MiB }),
    row(1, 'direct', 100, { mode: 'prepared' }), row(1, 'ambassador', 50, { mode: 'prepared' }),
  ];
  const [simple, prepared] = summarize(rows, 'direct');
  assert.equal(simple!.mode, 'simple');
  const [direct, ambassador] = simple!.targets;
  assert.equal(direct!.target, 'direct');
  assert.equal(direct!.medianTps, 2000);
  assert.equal(direct!.medianRatio, null);
  assert.deepEqual(direct!.ratios, []);
  assert.equal(ambassador!.medianTps, 900);
  assert.deepEqual(ambassador!.ratios, [0.9, 0.2, 0.5]);
  assert.equal(ambassador!.medianRatio, 0.5); // the ratio of medians would be 0.45
  assert.equal(ambassador!.medianCpuUsPerTxn, 40);
  assert.equal(ambassador!.maxRssBytes, 70 * MiB);
  assert.equal(ambassador!.runs, 4);
  assert.equal(ambassador!.okRuns, 3);
  assert.equal(prepared!.mode, 'prepared');
  assert.equal(prepared!.targets[1]!.medianRatio, 0.5);

  const table = renderTable([simple!]);
  assert.match(table, /\| select-only \| simple \| 32 \| direct \| 2000 \| baseline \|/);
  assert.match(table, /\| ambassador \| 900 \| \*\*0\.500\*\* \(0\.900, 0\.200, 0\.500\) \| .* \| 40\.0 \| 70\.0 \| 3\/4 \|/);
});

test('/proc/<pid>/stat: utime and stime counted from the last ")" of the command name', () => {
  // Captured from a running node process, with the command name replaced by a hostile one.
  const stat = '4242 (no de) (x)) S 1 4242 4242 0 -1 4194560 20960 0 0 0 1234 567 0 0 20 0 11 0 93012 1195626496 14318 18446744073709551615 1 1 0 0 0 0 0 16781312 17922 0 0 0 17 1 0 0 0 0 0';
  assert.deepEqual(parseProcStatTicks(stat), { utime: 1234, stime: 567 });
  assert.throws(() => parseProcStatTicks('garbage'), /unexpected/);
});

test('/proc/<pid>/status: VmRSS in bytes', () => {
  const status = 'Name:\tnode\nVmPeak:\t 1200000 kB\nVmRSS:\t   57272 kB\nRssAnon:\t   30000 kB\n';
  assert.equal(parseVmRssBytes(status), 57272 * 1024);
  assert.throws(() => parseVmRssBytes('Name:\tzombie\n'), /no VmRSS/);
});

const COMPARED = [
  { numerator: 'ambassador', denominator: 'direct', note: 'session vs none' },
  { numerator: 'ambassador-txn', denominator: 'pgbouncer', note: 'same pool mode (transaction)' },
  { numerator: 'ambassador-txn', denominator: 'pgbouncer-session', note: 'txn vs session' },
];

test('comparisons: per-round pairs of named targets, only in groups where both ran', () => {
  const prepared = { mode: 'prepared' };
  const rows = [
    row(1, 'direct', 1000), row(1, 'ambassador', 500), row(1, 'ambassador-txn', 600), row(1, 'pgbouncer', 800),
    row(2, 'direct', 1000), row(2, 'ambassador', 700), row(2, 'ambassador-txn', null), row(2, 'pgbouncer', 900),
    row(3, 'direct', 1000), row(3, 'ambassador', 600), row(3, 'ambassador-txn', 500), row(3, 'pgbouncer', 1000),
    row(1, 'direct', 2000, prepared), row(1, 'ambassador-txn', 100, prepared), row(1, 'pgbouncer-session', 1000, prepared),
  ];
  const [simple, prep] = summarize(rows, 'direct', COMPARED);
  assert.deepEqual(simple!.comparisons.map((c) => `${c.numerator}/${c.denominator}`), ['ambassador/direct', 'ambassador-txn/pgbouncer']);
  const txn = simple!.comparisons[1]!;
  assert.deepEqual(txn.ratios, [0.75, 0.5]);
  assert.equal(txn.medianRatio, 0.625);
  assert.equal(txn.rounds, 3);
  assert.equal(txn.note, 'same pool mode (transaction)');
  assert.equal(simple!.comparisons[0]!.medianRatio, 0.6);
  // In prepared mode there is no ambassador and no transaction-mode pgbouncer.
  assert.deepEqual(prep!.comparisons.map((c) => `${c.numerator}/${c.denominator}`), ['ambassador-txn/pgbouncer-session']);
  assert.deepEqual(prep!.comparisons[0]!.ratios, [0.1]);
  // The baseline column still works for every target, the ones without a baseline pair included.
  assert.equal(prep!.targets.find((t) => t.target === 'pgbouncer-session')!.medianRatio, 0.5);
  assert.deepEqual(summarize(rows, 'direct').map((group) => group.comparisons), [[], []]);

  const table = renderComparisons([simple!, prep!]);
  assert.match(table, /\| select-only \| simple \| 32 \| ambassador-txn \/ pgbouncer \| \*\*0\.625\*\* \(0\.750, 0\.500; 2 of 3 rounds with both runs ok\) \| same pool mode \(transaction\) \|/);
  assert.match(table, /\| select-only \| prepared \| 32 \| ambassador-txn \/ pgbouncer-session \| \*\*0\.100\*\* \(0\.100\) \| txn vs session \|/);
});

test('comparisons with no round where both runs are ok say so', () => {
  const rows = [row(1, 'ambassador-txn', null), row(1, 'pgbouncer', 900)];
  const [group] = summarize(rows, 'direct', COMPARED);
  assert.equal(group!.comparisons[0]!.medianRatio, null);
  assert.match(renderComparisons([group!]), /ambassador-txn \/ pgbouncer \| – \(no round with both runs ok, of 1\)/);
  assert.match(renderComparisons([]), /no comparison/);
});

function report(rows: RunRow[], extra: Partial<BenchReport> = {}): BenchReport {
  return {
    facts: {
      date: '2025-01-01T00:00:00Z', nproc: 2, cpuModel: 'cpu', memoryGiB: 8, kernel: '6', node: 'v20', postgres: '15', pgbench: 'pgbench 15',
      gitCommit: null, loadAvgAtStart: [0.5, 0.4, 0.3],
    },
    settings: {
      durationS: 5, repeats: 2, clients: 32, threads: 2, scale: 10, targets: ['direct', 'ambassador-txn', 'pgbouncer'], baseline: 'direct',
      workloads: [{ name: 'select-only', description: 'pgbench -S', modes: ['simple'] }], notes: ['a note'],
    },
    summary: summarize(rows, 'direct', COMPARED),
    failedRuns: rows.filter((r) => !r.ok).length,
    unavailableTargets: [],
    deadTargets: [],
    wallTimeS: 42,
    verification: [],
    runs: rows,
    ...extra,
  };
}

test('markdown: comparisons, unavailable and dead targets, failed runs with pgbench stderr', () => {
  const rows = [row(1, 'direct', 1000), row(1, 'ambassador-txn', null), row(1, 'pgbouncer', 900)];
  const markdown = renderMarkdown(
    report(rows, {
      unavailableTargets: [{ target: 'pgbouncer-session', reason: 'prepare failed: apt-get install -y pgbouncer failed (exit code 100, signal null)' }],
      deadTargets: [{ target: 'ambassador', reason: 'during round 1 (select-only, -M simple): ambassador (pid 7) died: exit code 1\n{"msg":"crash"}' }],
      verification: [row(0, 'ambassador-txn', null, { problem: '32 client(s) aborted: prepared statement "P0_1" does not exist' })],
    }),
  );
  assert.match(markdown, /## Comparisons\n\n\| workload \| mode \|/);
  assert.match(markdown, /ambassador-txn \/ pgbouncer \| – \(no round with both runs ok, of 1\)/);
  assert.match(markdown, /## Unavailable targets \(1\)\n\n- pgbouncer-session: prepare failed: apt-get install/);
  assert.match(markdown, /## Targets that died \(1\)\n\n- ambassador: during round 1 .*\n\n {6}\{"msg":"crash"\}/);
  assert.match(markdown, /## Failed verification runs \(1; .*\n\n- verification ambassador-txn select-only simple: 32 client\(s\) aborted: prepared statement "P0_1"/);
  assert.match(markdown, /## Failed runs \(1\)\n\n- round 1 ambassador-txn select-only simple: 1 client\(s\) aborted\n\n {6}pgbench stderr:\n {6}pgbench: error: client 3 script 0 aborted/);
});

test('markdown of a clean run has no problem sections', () => {
  const markdown = renderMarkdown(report([row(1, 'direct', 1000), row(1, 'pgbouncer', 900)]));
  assert.doesNotMatch(markdown, /Unavailable|died|Failed/);
  assert.match(markdown, /Wall time 42 s/);
});

// The bench's arithmetic: medians, per-round ratios against the baseline, CPU per transaction,
// and /proc parsing.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProcStatTicks, parseVmRssBytes } from '../../../bench/proc.ts';
import { cpuMicrosPerTransaction, median, pairRatios, renderTable, summarize, type RunRow } from '../../../bench/report.ts';

function row(round: number, target: string, tps: number | null, extra: Partial<RunRow> = {}): RunRow {
  return {
    round, target, workload: 'select-only', mode: 'simple', clients: 32, threads: 2, durationS: 5, startedAt: '2025-01-01T00:00:00Z',
    ok: tps !== null, problem: tps === null ? '1 client(s) aborted' : null,
    tps, latencyAvgMs: tps ? 32_000 / tps : null, initialConnectionMs: 10, transactions: tps ? tps * 5 : 0,
    failedTransactions: 0, abortedClients: tps === null ? 1 : 0, cpuSeconds: null, cpuUsPerTxn: null, rssBytes: null, loadAvg1: 1.5,
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

// The targets of issue 9, judged from summaries built the way the bench builds them: each target
// read from its group and pair, met / not met at its threshold, "not measured" when the numbers
// did not run.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { issueGoals } from '../../../bench/goals.ts';
import { ratioBeside, renderGoals } from '../../../bench/markdown.ts';
import { summarize, summarizeScaling, type MemoryResult, type RunRow } from '../../../bench/report.ts';
import { COMPARISONS } from '../../../bench/targets.ts';
import { row } from './rows.ts';

const PARTNER = { simple: 'pgbouncer', extended: 'pgbouncer', prepared: 'pgbouncer-session' } as const;

/** Two rounds of select-only in every mode at 1, 32 and 256 clients; `ambassador` sets the ambassador's numbers per mode. */
function rows(ambassador: Record<keyof typeof PARTNER, { tps32: number; cpu: number; latency1: number; tps256: number }>): RunRow[] {
  const out: RunRow[] = [];
  for (const round of [1, 2]) {
    for (const mode of ['simple', 'extended', 'prepared'] as const) {
      const mine = ambassador[mode];
      const at = (clients: number): Partial<RunRow> => ({ mode, clients });
      out.push(
        row(round, 'direct', 10_000, { ...at(1), latencyMeanMs: 0.1 }),
        row(round, 'ambassador-txn', 5000, { ...at(1), latencyMeanMs: mine.latency1 }),
        row(round, PARTNER[mode], 6000, { ...at(1), latencyMeanMs: 0.15 }),
        row(round, 'direct', 30_000, at(32)),
        row(round, 'ambassador-txn', mine.tps32, { ...at(32), cpuUsPerTxn: mine.cpu }),
        row(round, PARTNER[mode], 20_000, { ...at(32), cpuUsPerTxn: 25 }),
        row(round, 'ambassador-txn', mine.tps256, at(256)),
      );
    }
  }
  return out;
}

function memory(bytesPerClient: number, connected = 10_000): MemoryResult {
  return {
    target: 'ambassador-txn', clients: 10_000, connected, failedLogins: 10_000 - connected, errors: [], rssBeforeBytes: 1, rssAfterBytes: 2,
    bytesPerClient, connectSeconds: 12, problem: null, details: null,
  };
}

function judge(runRows: RunRow[], memoryResults: MemoryResult[]) {
  const summary = summarize(runRows, 'direct', { comparisons: COMPARISONS, latencyReference: 'direct' });
  return issueGoals(summary, summarizeScaling(runRows), memoryResults);
}

test('every target met: tps, CPU, added latency, 256-client scaling, idle memory', () => {
  const good = { tps32: 19_000, cpu: 30, latency1: 0.155, tps256: 18_000 };
  const goals = judge(rows({ simple: good, extended: good, prepared: good }), [memory(12 * 1024)]);
  assert.equal(goals.length, 13);
  assert.deepEqual(goals.map((goal) => goal.met), Array(13).fill(true));
  const [tps, , prepared] = goals;
  assert.equal(tps!.value, 0.95);
  assert.match(tps!.where, /select-only simple, 32 clients: ambassador-txn \/ pgbouncer$/);
  assert.match(prepared!.where, /prepared, 32 clients: ambassador-txn \/ pgbouncer-session$/);
  assert.equal(goals[3]!.value, 1.2); // CPU 30 / 25
  assert.ok(Math.abs(goals[6]!.value! - 1.1) < 1e-9); // (0.155 - 0.1) / (0.15 - 0.1)
  assert.ok(Math.abs(goals[9]!.value! - 18 / 19) < 1e-9);
  assert.equal(goals[12]!.value, 12 * 1024);
});

test('each threshold fails on its own side', () => {
  const good = { tps32: 19_000, cpu: 30, latency1: 0.155, tps256: 18_000 };
  const goals = judge(
    rows({
      simple: { ...good, tps32: 17_000 }, // 0.85 < 0.9 (and 256/32 = 1.06)
      extended: { ...good, cpu: 35 }, // 1.4 > 1.3
      prepared: { ...good, latency1: 0.17, tps256: 15_000 }, // added latency 1.4 > 1.2; 256/32 = 0.79 < 0.9
    }),
    [memory(17 * 1024)],
  );
  const unmet = goals.filter((goal) => goal.met === false).map((goal) => `${goal.goal} | ${goal.where.split(':')[0]}`);
  assert.deepEqual(unmet, [
    'tps ratio | select-only simple, 32 clients',
    'CPU µs/txn ratio | select-only extended, 32 clients',
    'latency added over direct, ratio | select-only prepared, 1 client',
    'tps at 256 / at 32 clients, no errors | select-only prepared',
    'RSS per idle client (bytes) | 10000 idle clients',
  ]);
});

test('a failed run at 256 clients fails the scaling target whatever the ratio; missing clients fail the memory target', () => {
  const good = { tps32: 19_000, cpu: 30, latency1: 0.155, tps256: 18_000 };
  const runRows = rows({ simple: good, extended: good, prepared: good });
  runRows.push(row(3, 'ambassador-txn', null, { clients: 256 }));
  const goals = judge(runRows, [memory(8 * 1024, 9_000)]);
  const scaling = goals.find((goal) => goal.where === 'select-only simple: ambassador-txn')!;
  assert.equal(scaling.met, false);
  assert.equal(scaling.detail, '1 of 3 runs at 256 clients failed');
  assert.equal(goals[12]!.met, false);
  assert.equal(goals[12]!.detail, 'only 9000 of 10000 clients connected');
});

test('targets whose numbers did not run are "not measured", and the markdown says so', () => {
  const goals = issueGoals([], [], []);
  assert.equal(goals.length, 13);
  assert.ok(goals.every((goal) => goal.met === null && goal.value === null));
  const table = renderGoals(goals);
  assert.equal(table.match(/\| not measured \|/g)?.length, 13);
  assert.match(table, /0 of 0 measured targets met \(13 not measured\)/);

  const good = { tps32: 19_000, cpu: 30, latency1: 0.155, tps256: 18_000 };
  const measured = renderGoals(judge(rows({ simple: good, extended: { ...good, tps32: 10_000 }, prepared: good }), []));
  assert.match(measured, /\| tps ratio \| select-only extended, 32 clients: ambassador-txn \/ pgbouncer \| 0\.500 \| >= 0\.9 \| \*\*not met\*\* \|/);
  assert.match(measured, /\| CPU µs\/txn ratio \| select-only simple, 32 clients: ambassador-txn \/ pgbouncer \| 1\.200 \| <= 1\.3 \| met \|/);
  assert.match(measured, /11 of 12 measured targets met \(1 not measured\)/);
});

test('a ratio that rounds to its threshold is shown with the digits that tell them apart', () => {
  assert.equal(ratioBeside(0.8997796645939952, '>= 0.9'), '0.8998');
  assert.equal(ratioBeside(0.90004, '>= 0.9'), '0.90004');
  assert.equal(ratioBeside(1.3004, '<= 1.3'), '1.3004');
  assert.equal(ratioBeside(0.9, '>= 0.9'), '0.900', 'the threshold itself');
  assert.equal(ratioBeside(0.8996, '>= 0.9'), '0.8996');
  assert.equal(ratioBeside(0.91234, '>= 0.9'), '0.912', 'far enough: 3 decimals');
});

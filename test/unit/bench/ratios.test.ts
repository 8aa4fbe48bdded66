// Per-round ratios: of any metric between two targets, of the latency added over direct, and of
// one target with itself at two client counts. Each pairs runs of the same round only and skips
// rounds where either run failed or lacks the number.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addedLatencyRatios, median, pairRatios, scalingRatios } from '../../../bench/ratios.ts';
import { row } from './rows.ts';

const close = (actual: number[], expected: number[]): void => {
  assert.equal(actual.length, expected.length, `${actual} vs ${expected}`);
  actual.forEach((value, index) => assert.ok(Math.abs(value - expected[index]!) < 1e-9, `${actual} vs ${expected}`));
};

test('median: odd and even counts, unsorted input left alone, empty', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([]), null);
  const input = [5, 1, 4];
  median(input);
  assert.deepEqual(input, [5, 1, 4]);
});

test('CPU and p99 ratios pair the rounds like tps, skipping failed runs and missing readings', () => {
  const rows = [
    row(1, 'ambassador-txn', 900, { cpuUsPerTxn: 39, latencyP99Ms: 3 }), row(1, 'pgbouncer', 1000, { cpuUsPerTxn: 30, latencyP99Ms: 2 }),
    row(2, 'ambassador-txn', 800, { cpuUsPerTxn: 45, latencyP99Ms: 4 }), row(2, 'pgbouncer', 1000, { cpuUsPerTxn: 30, latencyP99Ms: 2 }),
    row(3, 'ambassador-txn', 10, { ok: false, cpuUsPerTxn: 900, latencyP99Ms: 90 }), row(3, 'pgbouncer', 1000, { cpuUsPerTxn: 30, latencyP99Ms: 2 }),
    row(4, 'ambassador-txn', 700, { cpuUsPerTxn: null, latencyP99Ms: 5 }), row(4, 'pgbouncer', 1000, { cpuUsPerTxn: 20, latencyP99Ms: 2 }),
  ];
  close(pairRatios(rows, 'ambassador-txn', 'pgbouncer'), [0.9, 0.8, 0.7]);
  close(pairRatios(rows, 'ambassador-txn', 'pgbouncer', 'cpuUsPerTxn'), [1.3, 1.5]);
  close(pairRatios(rows, 'ambassador-txn', 'pgbouncer', 'latencyP99Ms'), [1.5, 2, 2.5]);
  assert.equal(median(pairRatios(rows, 'ambassador-txn', 'pgbouncer', 'cpuUsPerTxn')), 1.4);
});

test('latency added over direct: (ambassador - direct) / (pgbouncer - direct) per round', () => {
  const rows = [
    row(1, 'direct', 1000, { latencyMeanMs: 0.1 }), row(1, 'ambassador-txn', 1000, { latencyMeanMs: 0.16 }), row(1, 'pgbouncer', 1000, { latencyMeanMs: 0.15 }),
    row(2, 'direct', 1000, { latencyMeanMs: 0.1 }), row(2, 'ambassador-txn', 1000, { latencyMeanMs: 0.2 }), row(2, 'pgbouncer', 1000, { latencyMeanMs: 0.14 }),
    // PgBouncer adds nothing this round: no meaningful ratio.
    row(3, 'direct', 1000, { latencyMeanMs: 0.1 }), row(3, 'ambassador-txn', 1000, { latencyMeanMs: 0.2 }), row(3, 'pgbouncer', 1000, { latencyMeanMs: 0.09 }),
    // direct failed this round.
    row(4, 'direct', 1000, { ok: false, latencyMeanMs: 9 }), row(4, 'ambassador-txn', 1000, { latencyMeanMs: 0.2 }), row(4, 'pgbouncer', 1000, { latencyMeanMs: 0.14 }),
  ];
  close(addedLatencyRatios(rows, 'ambassador-txn', 'pgbouncer', 'direct'), [1.2, 2.5]);
  assert.ok(Math.abs(median(addedLatencyRatios(rows, 'ambassador-txn', 'pgbouncer', 'direct'))! - 1.85) < 1e-9);
});

test('scaling: one target at the higher client count over the lower one, per round; other targets ignored', () => {
  const rows = [
    row(1, 'ambassador-txn', 1000, { clients: 32 }), row(1, 'ambassador-txn', 950, { clients: 256 }),
    row(2, 'ambassador-txn', 1000, { clients: 32 }), row(2, 'ambassador-txn', 800, { clients: 256 }),
    row(3, 'ambassador-txn', 1000, { clients: 32 }), row(3, 'ambassador-txn', 10, { clients: 256, ok: false }),
    row(1, 'pgbouncer', 5, { clients: 32 }), row(1, 'pgbouncer', 5000, { clients: 256 }),
  ];
  close(scalingRatios(rows, 'ambassador-txn', 32, 256), [0.95, 0.8]);
  close(scalingRatios(rows, 'pgbouncer', 32, 256), [1000]);
  assert.deepEqual(scalingRatios(rows, 'ambassador-txn', 1, 256), []);
});

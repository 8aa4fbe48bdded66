// BucketCounts and BucketHistogram: a value equal to a bound counts in that bucket (Prometheus'
// `le`), larger than every bound only in +Inf; the exposition is cumulative with sum and count.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { BucketCounts, BucketHistogram } from '../../../src/metrics/bucket-histogram.ts';

test('values land in the first bucket whose bound they do not exceed; the scrape is cumulative', async () => {
  const counts = new BucketCounts([0.1, 1]);
  for (const value of [0.1, 0.5, 1, 7]) counts.observe(value);
  assert.deepEqual([...counts.counts], [1, 2]);
  const registry = new Registry();
  registry.registerMetric(new BucketHistogram('t_seconds', 'test', () => [[{ route: 'primary' }, counts]]).asMetric());
  const lines = (await registry.metrics()).split('\n').filter((line) => !line.startsWith('#') && line !== '');
  assert.deepEqual(lines, [
    't_seconds_bucket{route="primary",le="0.1"} 1',
    't_seconds_bucket{route="primary",le="1"} 3',
    't_seconds_bucket{route="primary",le="+Inf"} 4',
    't_seconds_sum{route="primary"} 8.6',
    't_seconds_count{route="primary"} 4',
  ]);
  assert.match(await registry.metrics(), /# TYPE t_seconds histogram/);
});

// A histogram kept as plain bucket counts (what the hot path bumps) and exposed to a prom-client
// Registry as a metric of type histogram when scraped: cumulative `_bucket{le=...}` series, then
// `+Inf`, `_sum` and `_count`, per label set, as prom-client's own Histogram prints them. Observing
// is a short scan of the bounds and three additions; nothing is allocated.

import type { Metric, MetricObjectWithValues, MetricValueWithName } from 'prom-client';

/** Counts per bucket (a value lands in the first bucket whose upper bound it does not exceed). */
export class BucketCounts {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

type Labels = Record<string, string>;

export class BucketHistogram {
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly series: () => ReadonlyArray<readonly [Labels, BucketCounts]>,
  ) {}

  /** The scrape: every series' cumulative buckets, sum and count. */
  async get(): Promise<Omit<MetricObjectWithValues<MetricValueWithName<string>>, 'collect'>> {
    const values: MetricValueWithName<string>[] = [];
    for (const [labels, buckets] of this.series()) {
      let cumulative = 0;
      buckets.bounds.forEach((bound, i) => {
        cumulative += buckets.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: bound }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: '+Inf' }, value: buckets.count });
      values.push({ metricName: `${this.name}_sum`, labels, value: buckets.sum });
      values.push({ metricName: `${this.name}_count`, labels, value: buckets.count });
    }
    return { name: this.name, help: this.help, type: 'histogram' as unknown as MetricObjectWithValues<MetricValueWithName<string>>['type'], aggregator: this.aggregator, values };
  }

  /** Registry.resetMetrics(): the counts belong to the traffic, not to the registry. */
  reset(): void {}

  /** For Registry.registerMetric, whose type names prom-client's own classes. */
  asMetric(): Metric {
    return this as unknown as Metric;
  }
}

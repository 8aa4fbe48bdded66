// The hot-path metrics: requests by route and reason, queries and transactions with their
// durations, waits for a server, errors sent to clients and sessions becoming pinned.
//
// Hot path: a call only bumps plain numbers (a reason's or error class's counts are looked up in
// a cached map, both routes' made at construction); nothing calls prom-client per request. The
// counters publish those numbers when scraped (collect), the histograms are bucket arrays
// exposed through BucketHistogram. Durations that are not finite are dropped and negative ones
// count as 0.

import { Counter, type Registry } from 'prom-client';
import type { TrafficObserver, TrafficRoute } from '../frontend/traffic.ts';
import type { PinReason } from '../router/session-effects.ts';
import { BucketCounts, BucketHistogram } from './bucket-histogram.ts';
import { ReasonLabels, sqlstateClass } from './labels.ts';

export const ROUTES: readonly TrafficRoute[] = ['primary', 'replica'];

/** Query and transaction durations: 0.5 ms (a cached point read over loopback) up to 30 s. */
export const DURATION_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Waits for a server connection: 0.1 ms (an idle one at hand) up to 30 s (acquire timeouts). */
export const POOL_WAIT_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Every PinReason, so pin series exist at 0 from the start. */
export const PIN_REASONS = ['advisory-lock', 'listen', 'temp-table', 'with-hold-cursor', 'prepare-transaction', 'sql-prepare', 'session-state'] as const satisfies readonly PinReason[];
// Fails to compile when PinReason gains a member the list lacks.
const pinReasonsComplete: Exclude<PinReason, (typeof PIN_REASONS)[number]> extends never ? true : never = true;
void pinReasonsComplete;

type ByRoute<T> = { readonly [route in TrafficRoute]: T };
type RouteCounts = { [route in TrafficRoute]: number };

const seconds = (value: number): number => (value > 0 ? value : 0);
const routeCounts = (): RouteCounts => ({ primary: 0, replica: 0 });
const byRoute = <T>(make: (route: TrafficRoute) => T): ByRoute<T> => ({ primary: make('primary'), replica: make('replica') });

export class TrafficMetrics implements TrafficObserver {
  private readonly requests = new ReasonLabels<RouteCounts>(routeCounts);
  private readonly queries = routeCounts();
  private readonly transactions = routeCounts();
  private readonly queryDurations = byRoute(() => new BucketCounts(DURATION_BUCKETS));
  private readonly transactionDurations = byRoute(() => new BucketCounts(DURATION_BUCKETS));
  private readonly poolWaits = new BucketCounts(POOL_WAIT_BUCKETS);
  private readonly errors = new Map<string, { count: number }>();
  private readonly pins = new ReasonLabels<{ count: number }>(() => ({ count: 0 }));

  constructor(registry: Registry) {
    const registers = [registry];
    const { requests, queries, transactions, errors, pins } = this;
    new Counter({
      name: 'pg_ambassador_requests_total',
      help: 'Requests (a Query, or Parse..Sync) sent to a server, by route and routing reason.',
      labelNames: ['route', 'reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const [reason, counts] of requests.entries()) for (const route of ROUTES) this.inc({ route, reason }, counts[route]);
      },
    });
    perRouteCounter(registry, 'pg_ambassador_queries_total', 'Queries completed (ReadyForQuery received), by route.', queries);
    perRouteCounter(registry, 'pg_ambassador_transactions_total', 'Transactions completed (ReadyForQuery idle), by route.', transactions);
    registry.registerMetric(
      new BucketHistogram('pg_ambassador_query_duration_seconds', 'Time from sending a query to the server until its ReadyForQuery, by route.', () =>
        ROUTES.map((route) => [{ route }, this.queryDurations[route]]),
      ).asMetric(),
    );
    registry.registerMetric(
      new BucketHistogram('pg_ambassador_transaction_duration_seconds', 'Time from the first request of a transaction until it ended, by route.', () =>
        ROUTES.map((route) => [{ route }, this.transactionDurations[route]]),
      ).asMetric(),
    );
    registry.registerMetric(
      new BucketHistogram('pg_ambassador_pool_wait_seconds', 'Time clients waited for a server connection from the pool.', () => [[{}, this.poolWaits]]).asMetric(),
    );
    new Counter({
      name: 'pg_ambassador_errors_total',
      help: 'Error responses sent to clients, by SQLSTATE class (XX: malformed).',
      labelNames: ['class'] as const,
      registers,
      collect() {
        this.reset();
        for (const [errorClass, { count }] of errors) this.inc({ class: errorClass }, count);
      },
    });
    new Counter({
      name: 'pg_ambassador_pins_total',
      help: 'Times a session became pinned to its server connection, by reason.',
      labelNames: ['reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const [reason, { count }] of pins.entries()) this.inc({ reason }, count);
      },
    });
    for (const reason of PIN_REASONS) this.pins.get(reason);
  }

  request(route: TrafficRoute, reason: string): void {
    const counts = this.requests.get(typeof reason === 'string' ? reason : '');
    if (route in counts) counts[route]++;
  }

  query(route: TrafficRoute, duration: number): void {
    if (!(route in this.queries)) return;
    this.queries[route]++;
    if (Number.isFinite(duration)) this.queryDurations[route].observe(seconds(duration));
  }

  transaction(route: TrafficRoute, duration: number): void {
    if (!(route in this.transactions)) return;
    this.transactions[route]++;
    if (Number.isFinite(duration)) this.transactionDurations[route].observe(seconds(duration));
  }

  poolWait(duration: number): void {
    if (Number.isFinite(duration)) this.poolWaits.observe(seconds(duration));
  }

  error(sqlstate: string): void {
    const errorClass = sqlstateClass(sqlstate);
    let counter = this.errors.get(errorClass);
    if (counter === undefined) this.errors.set(errorClass, (counter = { count: 0 }));
    counter.count++;
  }

  /** A session became pinned for `reason`. */
  pinned(reason: string): void {
    this.pins.get(typeof reason === 'string' ? reason : '').count++;
  }
}

/** A counter by route, published from `counts` when scraped (both routes present from the start). */
function perRouteCounter(registry: Registry, name: string, help: string, counts: RouteCounts): void {
  new Counter({
    name,
    help,
    labelNames: ['route'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const route of ROUTES) this.inc({ route }, counts[route]);
    },
  });
}

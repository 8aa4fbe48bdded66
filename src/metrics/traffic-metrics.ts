// The hot-path metrics: requests by route and reason, queries and transactions with their
// durations, waits for a server, errors sent to clients and sessions becoming pinned.
//
// Invariants: every labelled child a call can reach is made once (both routes at construction,
// reasons and error classes on first sight, then cached), so a call is a map lookup at most and
// makes no label objects. Durations that are not finite are dropped and negative ones count as
// 0, so no call can throw from prom-client's checks.

import { Counter, Histogram, type Registry } from 'prom-client';
import type { TrafficObserver, TrafficRoute } from '../frontend/traffic.ts';
import type { PinReason } from '../router/session-effects.ts';
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

interface Inc {
  inc(value?: number): void;
}
interface Observe {
  observe(value: number): void;
}
type ByRoute<T> = { readonly [route in TrafficRoute]: T };

const seconds = (value: number): number => (value > 0 ? value : 0);

export class TrafficMetrics implements TrafficObserver {
  private readonly requests: ReasonLabels<ByRoute<Inc>>;
  private readonly queries: ByRoute<Inc>;
  private readonly transactions: ByRoute<Inc>;
  private readonly queryDurations: ByRoute<Observe>;
  private readonly transactionDurations: ByRoute<Observe>;
  private readonly poolWaits: Histogram;
  private readonly errorsByClass = new Map<string, Inc>();
  private readonly errors: Counter<'class'>;
  private readonly pins: ReasonLabels<Inc>;

  constructor(registry: Registry) {
    const registers = [registry];
    const requests = new Counter({
      name: 'pg_ambassador_requests_total',
      help: 'Requests (a Query, or Parse..Sync) sent to a server, by route and routing reason.',
      labelNames: ['route', 'reason'] as const,
      registers,
    });
    this.requests = new ReasonLabels((reason) => byRoute((route) => zeroed(requests.labels(route, reason))));
    const queries = new Counter({ name: 'pg_ambassador_queries_total', help: 'Queries completed (ReadyForQuery received), by route.', labelNames: ['route'] as const, registers });
    this.queries = byRoute((route) => zeroed(queries.labels(route)));
    const transactions = new Counter({ name: 'pg_ambassador_transactions_total', help: 'Transactions completed (ReadyForQuery idle), by route.', labelNames: ['route'] as const, registers });
    this.transactions = byRoute((route) => zeroed(transactions.labels(route)));
    const queryDuration = new Histogram({
      name: 'pg_ambassador_query_duration_seconds',
      help: 'Time from sending a query to the server until its ReadyForQuery, by route.',
      labelNames: ['route'] as const,
      buckets: [...DURATION_BUCKETS],
      registers,
    });
    this.queryDurations = byRoute((route) => {
      queryDuration.zero({ route });
      return queryDuration.labels(route);
    });
    const transactionDuration = new Histogram({
      name: 'pg_ambassador_transaction_duration_seconds',
      help: 'Time from the first request of a transaction until it ended, by route.',
      labelNames: ['route'] as const,
      buckets: [...DURATION_BUCKETS],
      registers,
    });
    this.transactionDurations = byRoute((route) => {
      transactionDuration.zero({ route });
      return transactionDuration.labels(route);
    });
    this.poolWaits = new Histogram({
      name: 'pg_ambassador_pool_wait_seconds',
      help: 'Time clients waited for a server connection from the pool.',
      buckets: [...POOL_WAIT_BUCKETS],
      registers,
    });
    this.errors = new Counter({ name: 'pg_ambassador_errors_total', help: 'Error responses sent to clients, by SQLSTATE class (XX: malformed).', labelNames: ['class'] as const, registers });
    const pins = new Counter({ name: 'pg_ambassador_pins_total', help: 'Times a session became pinned to its server connection, by reason.', labelNames: ['reason'] as const, registers });
    this.pins = new ReasonLabels((reason) => zeroed(pins.labels(reason)));
    for (const reason of PIN_REASONS) this.pins.get(reason);
  }

  request(route: TrafficRoute, reason: string): void {
    this.requests.get(typeof reason === 'string' ? reason : '')[route]?.inc();
  }

  query(route: TrafficRoute, duration: number): void {
    this.queries[route]?.inc();
    if (Number.isFinite(duration)) this.queryDurations[route]?.observe(seconds(duration));
  }

  transaction(route: TrafficRoute, duration: number): void {
    this.transactions[route]?.inc();
    if (Number.isFinite(duration)) this.transactionDurations[route]?.observe(seconds(duration));
  }

  poolWait(duration: number): void {
    if (Number.isFinite(duration)) this.poolWaits.observe(seconds(duration));
  }

  error(sqlstate: string): void {
    const errorClass = sqlstateClass(sqlstate);
    let child = this.errorsByClass.get(errorClass);
    if (child === undefined) this.errorsByClass.set(errorClass, (child = this.errors.labels(errorClass)));
    child.inc();
  }

  /** A session became pinned for `reason`. */
  pinned(reason: string): void {
    this.pins.get(typeof reason === 'string' ? reason : '').inc();
  }
}

function byRoute<T>(make: (route: TrafficRoute) => T): ByRoute<T> {
  return { primary: make('primary'), replica: make('replica') };
}

/** The child, with its series present at 0 from the start. */
function zeroed<T extends Inc>(child: T): T {
  child.inc(0);
  return child;
}

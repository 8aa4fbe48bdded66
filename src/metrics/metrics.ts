// Every Prometheus metric of the ambassador (prefix pg_ambassador_), in its own Registry. The
// core never imports prom-client: sessions call the TrafficObserver methods, the side loops hand
// their events to healthEvent / rotationEvent / poolEvent, app.ts reports config reloads and
// pins, and everything else is read from a MetricsSource when Prometheus scrapes.
//
// Parts: traffic-metrics.ts (hot path), event-metrics.ts (side-loop events), scrape-metrics.ts
// (read at scrape time), labels.ts (bounded label values).
//
// Invariants: observers never throw (the event entry points swallow what a malformed event could
// make prom-client throw; the hot path only does what cannot throw); the global prom-client
// registry is never touched.

import { collectDefaultMetrics, Registry } from 'prom-client';
import type { RotationEvent } from '../credentials/events.ts';
import type { TrafficObserver, TrafficRoute } from '../frontend/traffic.ts';
import type { HealthEvent } from '../health/events.ts';
import type { PoolEvent } from '../pool/connection-pool.ts';
import { EventMetrics, type ReloadResult } from './event-metrics.ts';
import { registerScrapeMetrics, type MetricsSource } from './scrape-metrics.ts';
import { TrafficMetrics } from './traffic-metrics.ts';

export type { MetricsSource } from './scrape-metrics.ts';
export type { ReloadResult } from './event-metrics.ts';

export interface AmbassadorMetricsOptions {
  /** The running version (pg_ambassador_build_info{version}). */
  version: string;
  /** Node's process metrics (process_*, nodejs_*); default true. */
  defaultMetrics?: boolean;
}

export class AmbassadorMetrics implements TrafficObserver {
  readonly registry: Registry;
  readonly contentType: string;
  private readonly traffic: TrafficMetrics;
  private readonly events: EventMetrics;

  constructor(source: MetricsSource, options: AmbassadorMetricsOptions) {
    this.registry = new Registry();
    this.contentType = this.registry.contentType;
    this.traffic = new TrafficMetrics(this.registry);
    this.events = new EventMetrics(this.registry, () => hostIds(source));
    registerScrapeMetrics(this.registry, source, options.version);
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** The exposition text for GET /metrics (serve it with `contentType`). */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  request(route: TrafficRoute, reason: string): void {
    this.traffic.request(route, reason);
  }

  query(route: TrafficRoute, seconds: number): void {
    this.traffic.query(route, seconds);
  }

  transaction(route: TrafficRoute, seconds: number): void {
    this.traffic.transaction(route, seconds);
  }

  poolWait(seconds: number): void {
    this.traffic.poolWait(seconds);
  }

  error(sqlstate: string): void {
    this.traffic.error(sqlstate);
  }

  /** A session became pinned to its server connection for `reason` (a PinReason). */
  pinnedSession(reason: string): void {
    this.traffic.pinned(reason);
  }

  healthEvent(event: HealthEvent): void {
    guarded(() => this.events.health(event));
  }

  rotationEvent(event: RotationEvent): void {
    guarded(() => this.events.rotation(event));
  }

  poolEvent(event: PoolEvent): void {
    guarded(() => this.events.pool(event));
  }

  configReload(result: ReloadResult): void {
    this.events.configReload(result);
  }
}

function* hostIds(source: MetricsSource): Iterable<string> {
  for (const host of source.hosts()) yield host.id;
}

/** Runs an event's bookkeeping; a malformed event is not counted rather than thrown at its publisher. */
function guarded(record: () => void): void {
  try {
    record();
  } catch {
    // Observers must not break the loop that published the event.
  }
}

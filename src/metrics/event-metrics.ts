// Counters fed by the side loops' events: health (host and breaker changes, failovers), rotation
// (credential refreshes and rejections, TLS reloads), the pools (server connects, disconnects,
// acquire timeouts) and config reloads.
//
// Invariants: series whose label values are known up front (event types, TLS scopes, reload
// results) exist at 0 from the start, so rate() and increase() see the first event. A failover
// counts only when the primary changed (the old one coming back is the end of an outage, not a
// failover). Nothing here keeps per-event state beyond the counters.

import { Counter, Gauge, type Registry } from 'prom-client';
import type { RotationEvent } from '../credentials/events.ts';
import { HEALTH_EVENT_TYPES, type HealthEvent } from '../health/events.ts';
import type { PoolEvent } from '../pool/connection-pool.ts';
import { poolKeyHost } from './labels.ts';

export const RELOAD_RESULTS = ['ok', 'failed'] as const;
export type ReloadResult = (typeof RELOAD_RESULTS)[number];

const TLS_SCOPES = ['upstream', 'listen'] as const;

export class EventMetrics {
  /** One child per HealthEventType; a type not in HEALTH_EVENT_TYPES is not counted. */
  private readonly healthEvents = new Map<string, { inc(): void }>();
  private readonly failovers: Counter;
  private readonly failoverDuration: Gauge;
  private readonly credentialRefreshes: Counter<'provider' | 'result'>;
  private readonly credentialRejections: Counter<'provider' | 'retry'>;
  private readonly tlsReloads: Counter<'scope' | 'result'>;
  private readonly serverConnects: Counter<'host' | 'result'>;
  private readonly serverDisconnects: Counter<'host' | 'reason'>;
  private readonly acquireTimeouts: Counter<'host'>;
  private readonly configReloads: Counter<'result'>;

  /** `hostIds` lists the configured hosts' ids ("host:port"), to find the host in a pool key. */
  constructor(registry: Registry, private readonly hostIds: () => Iterable<string>) {
    const registers = [registry];
    const healthEvents = new Counter({ name: 'pg_ambassador_health_events_total', help: 'Health events (host down/up, role changes, failovers, split brain, breakers, address changes), by type.', labelNames: ['type'] as const, registers });
    for (const type of HEALTH_EVENT_TYPES) {
      const child = healthEvents.labels(type);
      child.inc(0);
      this.healthEvents.set(type, child);
    }
    this.failovers = new Counter({ name: 'pg_ambassador_failovers_total', help: 'Failovers that ended with another host as the primary.', registers });
    this.failoverDuration = new Gauge({ name: 'pg_ambassador_failover_duration_seconds', help: 'How long the last failover that changed the primary took, from losing the old primary to knowing the new one.', registers });
    this.credentialRefreshes = new Counter({ name: 'pg_ambassador_credential_refreshes_total', help: 'Upstream credential fetches, by provider and result (ok|failed).', labelNames: ['provider', 'result'] as const, registers });
    this.credentialRejections = new Counter({
      name: 'pg_ambassador_credential_rejections_total',
      help: 'Upstream logins the server rejected, by provider and the secret retried with (fresh|previous|changed|none).',
      labelNames: ['provider', 'retry'] as const,
      registers,
    });
    this.tlsReloads = new Counter({ name: 'pg_ambassador_tls_reloads_total', help: 'Reloads of TLS certificates and keys, by scope (upstream|listen) and result (ok|failed).', labelNames: ['scope', 'result'] as const, registers });
    for (const scope of TLS_SCOPES) for (const result of RELOAD_RESULTS) this.tlsReloads.inc({ scope, result }, 0);
    this.serverConnects = new Counter({ name: 'pg_ambassador_server_connects_total', help: 'Connection attempts to upstream servers, by host and result (ok|failed).', labelNames: ['host', 'result'] as const, registers });
    this.serverDisconnects = new Counter({ name: 'pg_ambassador_server_disconnects_total', help: 'Server connections closed, by host and reason.', labelNames: ['host', 'reason'] as const, registers });
    this.acquireTimeouts = new Counter({ name: 'pg_ambassador_pool_acquire_timeouts_total', help: 'Clients that gave up waiting for a server connection (acquire timeout), by host.', labelNames: ['host'] as const, registers });
    this.configReloads = new Counter({ name: 'pg_ambassador_config_reloads_total', help: 'Configuration reloads, by result (ok|failed).', labelNames: ['result'] as const, registers });
    for (const result of RELOAD_RESULTS) this.configReloads.inc({ result }, 0);
  }

  health(event: HealthEvent): void {
    this.healthEvents.get(event.type)?.inc();
    if (event.type === 'failover-ended' && event.newPrimary !== event.oldPrimary) {
      this.failovers.inc();
      if (Number.isFinite(event.durationMs)) this.failoverDuration.set(Math.max(0, event.durationMs) / 1000);
    }
  }

  rotation(event: RotationEvent): void {
    switch (event.type) {
      case 'credential-refreshed':
        return this.credentialRefreshes.inc({ provider: event.provider, result: 'ok' });
      case 'credential-refresh-failed':
        return this.credentialRefreshes.inc({ provider: event.provider, result: 'failed' });
      case 'credential-rejected':
        return this.credentialRejections.inc({ provider: event.provider, retry: event.retry });
      case 'tls-reloaded':
        return this.tlsReloads.inc({ scope: event.scope, result: 'ok' });
      case 'tls-reload-failed':
        return this.tlsReloads.inc({ scope: event.scope, result: 'failed' });
    }
  }

  pool(event: PoolEvent): void {
    switch (event.type) {
      case 'created':
        return this.serverConnects.inc({ host: this.hostOf(event.key), result: 'ok' });
      case 'connect-failed':
        return this.serverConnects.inc({ host: this.hostOf(event.key), result: 'failed' });
      case 'destroyed':
        return this.serverDisconnects.inc({ host: this.hostOf(event.key), reason: event.reason });
      case 'timeout':
        return this.acquireTimeouts.inc({ host: this.hostOf(event.key) });
    }
  }

  configReload(result: ReloadResult): void {
    this.configReloads.inc({ result: result === 'ok' ? 'ok' : 'failed' });
  }

  private hostOf(key: string): string {
    if (typeof key !== 'string') throw new TypeError('pool event without a key');
    return poolKeyHost(key, this.hostIds());
  }
}

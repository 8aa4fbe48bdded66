// What a Pooler is built with (PoolerOptions), the part of it a config reload may change
// (PoolerSettings, applied by Pooler.reconfigure) and what a reload did to the host list.

import type { Logger } from 'pino';
import type { Connector, UpstreamTlsSettings } from '../backend/connector.ts';
import type { CredentialCache } from '../credentials/cache.ts';
import type { CircuitBreakerOptions } from '../health/circuit-breaker.ts';
import type { HealthEvent } from '../health/events.ts';
import type { Prober } from '../health/prober.ts';
import type { Resolve } from '../health/resolver.ts';
import type { Clock } from '../lib/clock.ts';
import type { PoolEvent, PoolOptions } from './pool-types.ts';
import type { ChoiceOptions } from './host-choice.ts';
import type { HostEntry } from './server-pool.ts';
import type { ServerConnect } from './upstream-login.ts';

export interface PoolerOptions {
  connector: Connector;
  hosts: readonly HostEntry[];
  tls: () => UpstreamTlsSettings;
  connectTimeoutMs: number;
  /** Upstream secrets by login; null when no credentials are configured (trust, cert auth). */
  credentials: CredentialCache | null;
  maxMessageSize: number;
  pool: PoolOptions;
  choice: ChoiceOptions;
  health: {
    intervalMs: number;
    timeoutMs: number;
    failureThreshold: number;
    /** How long acquireFor waits for a host that can serve (a new primary). */
    failoverTimeoutMs: number;
    circuitBreaker: CircuitBreakerOptions;
  };
  /** The login health probes use; unset parts come from the first client. */
  probeLogin: { user?: string | undefined; database?: string | undefined };
  log: Logger;
  onEvent?: (event: PoolEvent) => void;
  /** Every health event, after the pool acted on it (metrics, counters). */
  onHealthEvent?: (event: HealthEvent) => void;
  /** Test seams: time, name lookups, connects and probes. */
  clock?: Clock;
  resolve?: Resolve;
  connect?: ServerConnect;
  prober?: Prober;
}

/** What a config reload may change (reconfigure); the rest of PoolerOptions is fixed. */
export interface PoolerSettings {
  hosts: readonly HostEntry[];
  connectTimeoutMs: number;
  credentials: CredentialCache | null;
  pool: PoolOptions;
  choice: ChoiceOptions;
  health: PoolerOptions['health'];
  probeLogin: { user?: string | undefined; database?: string | undefined };
}

/** Host ids ("host:port") a reconfigure added, removed, or changed (configured role or weight). */
export interface HostChanges {
  added: string[];
  removed: string[];
  changed: string[];
}

/** What a reload changes in the host list, by id; changed: the configured role or weight differ. */
export function hostChanges(before: readonly HostEntry[], after: readonly HostEntry[]): HostChanges {
  const id = (entry: HostEntry): string => `${entry.host}:${entry.port}`;
  const old = new Map(before.map((entry) => [id(entry), entry]));
  const now = new Set(after.map(id));
  const changes: HostChanges = { added: [], removed: [...old.keys()].filter((key) => !now.has(key)), changed: [] };
  for (const entry of after) {
    const was = old.get(id(entry));
    if (was === undefined) changes.added.push(id(entry));
    else if (was.role !== entry.role || (was.weight ?? 1) !== (entry.weight ?? 1)) changes.changed.push(id(entry));
  }
  return changes;
}

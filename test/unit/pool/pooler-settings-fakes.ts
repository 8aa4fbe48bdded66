// PoolerSettings matching setupPooler's defaults (pooler-fakes.ts), for reconfigure tests: a
// reload that changes only what a test names.

import type { PoolerSettings } from '../../../src/pool/pooler.ts';
import type { HostEntry } from '../../../src/pool/server-pool.ts';

export function hostEntry(id: string, role: HostEntry['role'] = 'auto', weight?: number): HostEntry {
  const [host, port] = id.split(':');
  return { host: host!, port: Number(port), role, ...(weight === undefined ? {} : { weight }) };
}

export function settings(ids: readonly string[], overrides: Partial<PoolerSettings> = {}): PoolerSettings {
  return {
    hosts: ids.map((id) => hostEntry(id)),
    connectTimeoutMs: 1000,
    credentials: null,
    pool: { size: 2, minIdle: 0, idleTimeoutMs: 0, maxLifetimeMs: 0, acquireTimeoutMs: 5000, retry: { max: 1, initialDelayMs: 50, maxDelayMs: 200 } },
    choice: { loadBalance: 'round-robin', maxReplicaLag: {}, readsFromPrimary: 'fallback' },
    health: { intervalMs: 1000, timeoutMs: 250, failureThreshold: 2, failoverTimeoutMs: 10_000, circuitBreaker: { threshold: 5, cooldownMs: 10_000 } },
    probeLogin: { user: 'app', database: 'appdb' },
    ...overrides,
  };
}

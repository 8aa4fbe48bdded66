// Plain views of the pools for the admin console and metrics (SHOW SERVERS, SHOW POOLS): one row
// per open server connection, one summary per ConnectionPool. Read-only: built from what the
// pools and connections already know, nothing is queried.

import type { BackendConnection } from '../backend/connection.ts';
import type { HostState } from '../health/monitor.ts';
import type { ConnectionPool } from './connection-pool.ts';

export interface ServerSnapshot {
  /** "host:port" */
  host: string;
  role: 'primary' | 'replica' | 'unknown';
  database: string;
  user: string;
  state: 'active' | 'idle';
  /** Epoch ms (the pool clock) when the connection was opened. */
  connectedAt: number;
  /** Epoch ms (the pool clock) of its last acquire or release. */
  lastUsedAt: number;
  /** The server's backend process id (BackendKeyData), 0 when it sent none. */
  processId: number;
  localAddress: string;
  localPort: number;
  tls: boolean;
}

export interface PoolSummary {
  /** "host:port" */
  host: string;
  role: string;
  database: string;
  user: string;
  size: number;
  idle: number;
  active: number;
  connecting: number;
  waiting: number;
  maxWaitMs: number;
  /** Leased connections a cancel is on its way to (PgBouncer's sv_active_cancel). */
  cancelling: number;
  /** Connections released by their client whose return to the pool waits for a cancel to land (sv_being_canceled). */
  beingCanceled: number;
  /** The pool was drained (host down or removed, role changed): its leased connections close when released. */
  draining: boolean;
}

/** What the snapshots need to know of a pool. */
export interface SnapshotPool {
  pool: ConnectionPool<BackendConnection>;
  host: HostState;
  database: string;
  user: string;
}

export function serverRows(entry: SnapshotPool): ServerSnapshot[] {
  const { host, database, user } = entry;
  return entry.pool.connections().map(({ conn, state, connectedAt, lastUsedAt }) => ({
    host: host.id,
    role: host.role,
    database,
    user,
    state,
    connectedAt,
    lastUsedAt,
    processId: conn.processId ?? 0,
    localAddress: conn.socket?.localAddress ?? '',
    localPort: conn.socket?.localPort ?? 0,
    tls: conn.tlsSocket != null,
  }));
}

/** `held`: the connections whose release waits for a cancel (Pooler.release). */
export function poolSummary(entry: SnapshotPool, held: ReadonlySet<BackendConnection>): PoolSummary {
  const stats = entry.pool.stats();
  let cancelling = 0;
  let beingCanceled = 0;
  for (const { conn, state } of entry.pool.connections()) {
    if (state !== 'active') continue;
    if (conn.cancelling !== null) cancelling++;
    if (held.has(conn)) beingCanceled++;
  }
  return {
    host: entry.host.id,
    role: entry.host.role,
    database: entry.database,
    user: entry.user,
    size: stats.size,
    idle: stats.idle,
    active: stats.active,
    connecting: stats.connecting,
    waiting: stats.waiting,
    maxWaitMs: stats.maxWaitMs,
    cancelling,
    beingCanceled,
    draining: entry.pool.isClosed,
  };
}

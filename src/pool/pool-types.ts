// The vocabulary of a ConnectionPool (connection-pool.ts): its options, the factory it opens
// connections with, what it reports (stats, events, the open connections), why a connection left
// it, and the two errors it rejects acquires with. connection-pool.ts re-exports the types.

import { AmbassadorError } from '../errors.ts';
import type { Clock } from '../lib/clock.ts';

export interface PoolOptions {
  size: number; // max connections: idle + active + connecting
  minIdle: number; // idle connections kept open (created in the background) when below
  idleTimeoutMs: number; // idle connections beyond minIdle are closed after this; 0 = never
  maxLifetimeMs: number; // retired after this, jittered to 85-100% per connection; 0 = unlimited
  acquireTimeoutMs: number; // a waiter gets POOL_TIMEOUT after this; 0 = waits without limit
  retry: { max: number; initialDelayMs: number; maxDelayMs: number }; // 1 + max attempts per acquire
}

export interface ConnectionFactory<T> {
  create(): Promise<T>; // opens and logs in; throws on failure
  destroy(conn: T): void; // closes (idempotent)
  isAlive(conn: T): boolean; // false when the socket closed under us
  onClosed(conn: T, cb: () => void): void; // cb runs when the connection dies by itself
  /** Whether another attempt may succeed after this create() error (bad password: no); default: retry all. */
  retryable?(err: unknown): boolean;
}

export interface PoolStats {
  key: string;
  size: number;
  idle: number;
  active: number;
  connecting: number;
  waiting: number;
  maxWaitMs: number; // how long the oldest waiter has waited so far
  totalCreated: number;
  connectAttempts: number;
  connectFailures: number;
  lastConnectError: string | null;
}

/** One open connection of a pool as ConnectionPool.connections() lists it. */
export interface PooledConnection<T> {
  conn: T;
  state: 'idle' | 'active';
  /** The pool clock's now() when the connection was opened. */
  connectedAt: number;
  /** The pool clock's now() at its last acquire or release. */
  lastUsedAt: number;
}

export type DestroyReason = 'idle-timeout' | 'lifetime' | 'broken' | 'closed' | 'pool-closed' | 'resized';

export type PoolEvent =
  | { type: 'created'; key: string }
  | { type: 'destroyed'; key: string; reason: DestroyReason }
  | { type: 'connect-failed'; key: string; error: string; attempt: number }
  | { type: 'timeout'; key: string; waitMs: number };

export interface PoolDeps {
  clock?: Clock;
  random?: () => number;
  /** Observers only (metrics, logs); an exception thrown here is ignored. */
  onEvent?: (event: PoolEvent) => void;
}

/** An acquire waited pool.acquireTimeout: what the pool was busy with, and a failing connect if any. */
export function poolTimeoutError(key: string, waitedMs: number, options: PoolOptions, busy: string, connectError: string | null): AmbassadorError {
  const failing = connectError ? `; connecting upstream fails: ${connectError}` : '';
  return new AmbassadorError(
    'POOL_TIMEOUT',
    `no server connection from pool ${key} after waiting ${waitedMs} ms (pool.size ${options.size}: ${busy})${failing}; ` +
      `raise pool.size or pool.acquireTimeout (${options.acquireTimeoutMs} ms), or shorten transactions`,
    { hint: `Raise pool.size if the server accepts more connections, or pool.acquireTimeout if clients may wait longer.` },
  );
}

export function poolClosedError(key: string): AmbassadorError {
  return new AmbassadorError('POOL_CLOSED', `pool ${key} is closed (shutdown or host removed); reconnect and retry`);
}

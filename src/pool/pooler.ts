// The ServerPool sessions use: one ConnectionPool per (host, database, user), created on first
// use. Which host serves a request is the policy function's business (choosePrimary today;
// read/write routing later); this file only maps requests onto pools and connections back.
//
// Server connections are opened with the user and database only: everything else a client
// asked for at startup is made true per lease by replaying it as SET (session-state.ts), so
// any connection in a pool can serve any client of that (database, user).

import { BackendConnection } from '../backend/connection.ts';
import type { Connector, UpstreamTlsSettings } from '../backend/connector.ts';
import { ConnectionPool, type PoolEvent, type PoolOptions, type PoolStats } from './connection-pool.ts';
import { choosePrimary, type HostEntry, type ReleaseOutcome, type ServerPool, type ServerRequest } from './server-pool.ts';

export interface PoolerOptions {
  connector: Connector;
  hosts: () => readonly HostEntry[];
  tls: () => UpstreamTlsSettings;
  connectTimeoutMs: number;
  password: () => Promise<string | null>;
  maxMessageSize: number;
  pool: PoolOptions;
  onEvent?: (event: PoolEvent) => void;
}

const NO_PARAMS: ReadonlyMap<string, string> = new Map();

export class Pooler implements ServerPool {
  private readonly pools = new Map<string, ConnectionPool<BackendConnection>>();
  private readonly owner = new WeakMap<BackendConnection, ConnectionPool<BackendConnection>>();

  constructor(private readonly options: PoolerOptions) {}

  acquire(request: ServerRequest): Promise<BackendConnection> {
    const host = choosePrimary(this.options.hosts());
    const key = `${host.host}:${host.port}/${request.database}/${request.user}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = this.createPool(key, host, request);
      this.pools.set(key, pool);
    }
    return pool.acquire();
  }

  release(connection: BackendConnection, outcome: ReleaseOutcome): void {
    const pool = this.owner.get(connection);
    if (pool) pool.release(connection, outcome);
    else connection.close(outcome === 'broken');
  }

  stats(): PoolStats[] {
    return [...this.pools.values()].map((p) => p.stats());
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
  }

  private createPool(key: string, host: HostEntry, request: ServerRequest): ConnectionPool<BackendConnection> {
    const { options } = this;
    const pool: ConnectionPool<BackendConnection> = new ConnectionPool<BackendConnection>(
      key,
      options.pool,
      {
        create: async () => {
          const connection = await BackendConnection.connect({
            connector: options.connector,
            target: { host: host.host, port: host.port },
            tls: options.tls(),
            connectTimeoutMs: options.connectTimeoutMs,
            user: request.user,
            database: request.database,
            params: NO_PARAMS,
            password: options.password,
            maxMessageSize: options.maxMessageSize,
          });
          this.owner.set(connection, pool);
          return connection;
        },
        destroy: (connection) => connection.close(),
        isAlive: (connection) => !connection.isClosed,
        onClosed: (connection, cb) => connection.socket.once('close', cb),
      },
      options.onEvent ? { onEvent: options.onEvent } : {},
    );
    return pool;
  }
}

// Where sessions get server connections. The interface is what the frontend depends on; the
// session-mode implementation here opens one upstream connection per client, to the primary.
// Transaction pooling (leases per transaction, idle lists, waiters, lifetimes) implements the
// same interface, and the choice of host stays a separate policy function.

import { BackendConnection, type BackendConnectOptions } from '../backend/connection.ts';
import type { Connector, UpstreamTarget, UpstreamTlsSettings } from '../backend/connector.ts';

export interface ServerRequest {
  user: string;
  database: string;
  /** Startup parameters carried from the client. */
  params: ReadonlyMap<string, string>;
}

export type ReleaseOutcome = 'reusable' | 'broken';

export interface ServerPool {
  acquire(request: ServerRequest): Promise<BackendConnection>;
  release(connection: BackendConnection, outcome: ReleaseOutcome): void;
  /** Closes every connection this pool holds. */
  close(): Promise<void>;
}

export interface HostEntry extends UpstreamTarget {
  role: 'auto' | 'primary' | 'replica';
}

/** Policy: the host a session-mode client is sent to (first declared primary, else first host). */
export function choosePrimary(hosts: readonly HostEntry[]): HostEntry {
  const chosen = hosts.find((h) => h.role === 'primary') ?? hosts.find((h) => h.role === 'auto') ?? hosts[0];
  if (!chosen) throw new Error('no upstream hosts configured');
  return chosen;
}

export interface SessionPoolOptions {
  connector: Connector;
  hosts: () => readonly HostEntry[];
  tls: () => UpstreamTlsSettings;
  connectTimeoutMs: number;
  password: () => Promise<string | null>;
  maxMessageSize: number;
}

/** Session mode without reuse: a fresh server connection per client, closed when it leaves. */
export class SessionPool implements ServerPool {
  private readonly open = new Set<BackendConnection>();

  constructor(private readonly options: SessionPoolOptions) {}

  async acquire(request: ServerRequest): Promise<BackendConnection> {
    const host = choosePrimary(this.options.hosts());
    const connectOptions: BackendConnectOptions = {
      connector: this.options.connector,
      target: { host: host.host, port: host.port },
      tls: this.options.tls(),
      connectTimeoutMs: this.options.connectTimeoutMs,
      user: request.user,
      database: request.database,
      params: request.params,
      password: this.options.password,
      maxMessageSize: this.options.maxMessageSize,
    };
    const connection = await BackendConnection.connect(connectOptions);
    this.open.add(connection);
    connection.socket.once('close', () => this.open.delete(connection));
    return connection;
  }

  release(connection: BackendConnection, outcome: ReleaseOutcome): void {
    this.open.delete(connection);
    connection.close(outcome === 'broken');
  }

  async close(): Promise<void> {
    for (const connection of this.open) connection.close();
    this.open.clear();
  }

  get size(): number {
    return this.open.size;
  }
}

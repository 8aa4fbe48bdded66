// The shared real-Postgres topology for integration tests: a primary and two streaming replicas.
// scripts/run-tests.ts starts ONE cluster per run and hands its description to every test process
// as JSON in PG_AMBASSADOR_TOPOLOGY; getTopology() returns that. When a test file runs on its own
// (no env var), the first getTopology() starts a cluster, stopped by a root-level after() hook.
// The shared cluster is shared: do not kill, stop, promote or reconfigure its servers. Tests that
// need faults call startCluster() for a private cluster (and stop it in their own after()).

import { after } from 'node:test';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type pg from 'pg';

import { startCluster, type ClusterDescription, type LocalCluster } from '../../src/demo/cluster.ts';
import type { Login, PgServerInfo } from '../../src/demo/pg-server.ts';

export { freePort } from '../../src/demo/free-port.ts';
export { startCluster } from '../../src/demo/cluster.ts';
export type { ClusterDescription, LocalCluster, Login, PgServerInfo };

export const TOPOLOGY_ENV = 'PG_AMBASSADOR_TOPOLOGY';

/** Alias: what tests receive is plain data (JSON), not live server objects. */
export type Topology = ClusterDescription;

let ownCluster: Promise<LocalCluster> | undefined;
let cached: Promise<Topology> | undefined;

// Registered at import time so it belongs to the file's root test, not to whichever test happens
// to call getTopology() first (an after() called inside a test runs when that test ends).
if (!process.env[TOPOLOGY_ENV]) {
  after(async () => {
    if (ownCluster) await (await ownCluster).stop();
  });
}

function parseTopology(json: string): Topology {
  try {
    const topology = JSON.parse(json) as Topology;
    if (!topology.primary?.port || !Array.isArray(topology.replicas)) throw new Error('missing primary/replicas');
    return topology;
  } catch (error) {
    throw new Error(`${TOPOLOGY_ENV} is not a cluster description: ${(error as Error).message}`);
  }
}

/** The shared cluster (primary + 2 replicas); see the top of this file. */
export function getTopology(): Promise<Topology> {
  cached ??= (async () => {
    const json = process.env[TOPOLOGY_ENV];
    if (json) return parseTopology(json);
    ownCluster = startCluster({ replicas: 2 });
    return (await ownCluster).describe();
  })();
  return cached;
}

export interface ClientConfigOptions {
  database?: string;
  /**
   * TLS: 'disable' (default), 'require' (encrypted, unverified), 'verify-full' (against
   * topology CA unless `ca` is given). `clientCert` adds the client certificate and key.
   */
  tls?: 'disable' | 'require' | 'verify-full';
  ca?: string;
  clientCert?: boolean;
}

/** A `pg` ClientConfig for one server of the topology. */
export function clientConfig(
  topology: Topology,
  server: PgServerInfo,
  login: Login,
  options: ClientConfigOptions = {},
): pg.ClientConfig {
  const config: pg.ClientConfig = {
    host: server.host,
    port: server.port,
    user: login.user,
    database: options.database ?? topology.database,
    connectionTimeoutMillis: 10_000,
  };
  if (login.password) config.password = login.password;
  const mode = options.tls ?? 'disable';
  if (mode !== 'disable') {
    const ssl: ConnectionOptions = { rejectUnauthorized: mode === 'verify-full' };
    if (mode === 'verify-full') ssl.ca = readFileSync(options.ca ?? topology.certs.caCert, 'utf8');
    if (options.clientCert) {
      ssl.cert = readFileSync(topology.certs.clientCert, 'utf8');
      ssl.key = readFileSync(topology.certs.clientKey, 'utf8');
    }
    config.ssl = ssl;
  }
  return config;
}

/** Polls `check` until it returns a non-undefined value or the deadline passes (no fixed sleeps). */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const reason = lastError ? `; last error: ${(lastError as Error).message}` : '';
      throw new Error(`timed out waiting for ${options.what ?? 'condition'}${reason}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
  }
}

/**
 * A loopback port that refuses connections (ECONNREFUSED) until close(): the local end of a
 * connection this process holds. A port from freePort() is only free when returned, and a test
 * running alongside may start listening on it meanwhile; this one no server can take, since a
 * connected socket (without SO_REUSEADDR) holds it.
 */
export async function refusingPort(): Promise<{ port: number; close(): Promise<void> }> {
  const { createServer, connect } = await import('node:net');
  const sockets: import('node:net').Socket[] = [];
  // Nothing is sent either way; an error on the held connection only ends it.
  const hold = (socket: import('node:net').Socket): void => {
    socket.on('error', () => {});
    sockets.push(socket);
  };
  const server = createServer(hold);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  const holder = connect((server.address() as import('node:net').AddressInfo).port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    holder.once('error', reject);
    holder.once('connect', () => resolve());
  });
  hold(holder);
  // Only the connection stays (a listener would be a port that accepts); the server's 'close'
  // comes once its accepted socket is destroyed too.
  server.close();
  server.unref();
  return {
    port: holder.localPort!,
    close: async () => {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** Holds a loopback port open (for "address in use" cases); close() releases it. */
export async function occupyPort(): Promise<{ port: number; close(): Promise<void> }> {
  const { createServer } = await import('node:net');
  const blocker = createServer();
  await new Promise<void>((resolve, reject) => {
    blocker.once('error', reject);
    blocker.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  return {
    port: (blocker.address() as import('node:net').AddressInfo).port,
    close: () => new Promise<void>((resolve) => blocker.close(() => resolve())),
  };
}

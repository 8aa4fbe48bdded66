// Composition root: turns a validated Config into running parts (credentials, TLS material,
// the server pool, the client listener) and wires them together. No logic of its own beyond
// mapping config onto constructors; it is the only module that knows every other one.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { TcpConnector, type Connector, type UpstreamTlsSettings } from './backend/connector.ts';
import type { Config } from './config/index.ts';
import {
  EnvPasswordProvider,
  FilePasswordProvider,
  StaticPasswordProvider,
  type CredentialProvider,
} from './credentials/provider.ts';
import { ConfigError } from './errors.ts';
import { storedCredential, type StoredCredential } from './frontend/client-auth.ts';
import { Listener } from './frontend/listener.ts';
import type { FrontendSettings } from './frontend/session.ts';
import { createLogger } from './lib/logger.ts';
import { Pooler } from './pool/pooler.ts';
import { CATALOG_SQL, FunctionCatalogs } from './health/function-catalogs.ts';
import { HealthCounters } from './health/events.ts';
import type { HostState } from './health/monitor.ts';
import { loadClassifierModule } from './router/classifier.ts';
import type { HostEntry } from './pool/server-pool.ts';

/** Prepared statements kept per server connection in transaction mode (as PgBouncer's default order). */
const PREPARED_STATEMENTS_PER_SERVER = 256;

export interface AmbassadorOptions {
  logger?: Logger;
  connector?: Connector;
  env?: NodeJS.ProcessEnv;
}

export interface Ambassador {
  readonly address: net.AddressInfo;
  readonly logger: Logger;
  readonly listener: Listener;
  /** The health snapshot routing reads: each host's role, state, lag and replayed WAL position. */
  hosts(): readonly HostState[];
  /** Health events so far (host down/up, role changes, failovers, breakers, address changes), for metrics. */
  healthCounters(): HealthCounters;
  /** Graceful shutdown: drain sessions up to shutdown.timeout, then close the pool. */
  shutdown(): Promise<void>;
}

export async function startAmbassador(config: Config, options: AmbassadorOptions = {}): Promise<Ambassador> {
  const logger = options.logger ?? createLogger({ level: config.logging.level });
  const credentials = credentialProvider(config, options.env ?? process.env);
  const upstreamTls = upstreamTlsSettings(config);
  const hosts: HostEntry[] = config.upstream.hosts.map((h) => ({ host: h.host, port: h.port, role: h.role, weight: h.weight }));
  const routingConfig = config.routing;
  const healthCounters = new HealthCounters();
  const pool = new Pooler({
    connector: options.connector ?? new TcpConnector(),
    hosts,
    tls: () => upstreamTls,
    connectTimeoutMs: config.upstream.connectTimeout,
    password: credentials ? async () => (await credentials.get()).password : async () => null,
    maxMessageSize: config.listen.maxMessageSize,
    pool: {
      size: config.pool.size,
      minIdle: config.pool.minIdle,
      idleTimeoutMs: config.pool.idleTimeout,
      maxLifetimeMs: config.pool.maxLifetime,
      acquireTimeoutMs: config.pool.acquireTimeout,
      retry: { max: config.upstream.retry.max, initialDelayMs: config.upstream.retry.initialDelay, maxDelayMs: config.upstream.retry.maxDelay },
    },
    choice: {
      loadBalance: routingConfig.loadBalance,
      maxReplicaLag: { ...routingConfig.maxReplicaLag },
      readsFromPrimary: routingConfig.readsFromPrimary,
    },
    health: {
      intervalMs: config.health.interval,
      timeoutMs: config.health.timeout,
      failureThreshold: config.health.failureThreshold,
      failoverTimeoutMs: config.health.failoverTimeout,
      circuitBreaker: { threshold: config.health.circuitBreaker.threshold, cooldownMs: config.health.circuitBreaker.cooldown },
    },
    probeLogin: { user: config.upstream.user, database: config.upstream.database },
    log: logger,
    onHealthEvent: (event) => healthCounters.record(event),
  });
  const catalogs = await functionCatalogs(config, pool, logger);
  const settings = frontendSettings(config);
  const listener = new Listener({
    host: config.listen.host,
    port: config.listen.port,
    maxClientConnections: config.listen.maxClientConnections,
    settings: () => settings,
    pool,
    routing: { catalogs, readYourWrites: routingConfig.readYourWrites },
    logger,
  });
  pool.startHealth();
  const address = await listener.listen();
  logger.info(
    {
      listen: `${address.address}:${address.port}`,
      upstream: hosts.map((h) => `${h.host}:${h.port}`),
      poolMode: config.pool.mode,
      readWriteSplit: catalogs !== null,
    },
    'pg-ambassador listening',
  );
  let stopping: Promise<void> | null = null;
  return {
    address,
    logger,
    listener,
    hosts: () => pool.hosts,
    healthCounters: () => healthCounters,
    shutdown() {
      stopping ??= (async () => {
        logger.info({ sessions: listener.sessions.size, timeoutMs: config.shutdown.timeout }, 'shutting down');
        await listener.shutdown(config.shutdown.timeout);
        catalogs?.stop();
        await pool.close();
        logger.info('shutdown complete');
      })();
      return stopping;
    },
  };
}

/**
 * Read/write splitting needs transaction pooling (a session-mode client keeps one server) and
 * the parser; each database's classifier learns its functions from the primary's pg_proc.
 */
async function functionCatalogs(config: Config, pool: Pooler, logger: Logger): Promise<FunctionCatalogs | null> {
  const routing = config.routing;
  if (!routing.readWriteSplit) return null;
  if (config.pool.mode !== 'transaction') {
    logger.warn('routing.readWriteSplit needs pool.mode transaction: in session mode a session stays on one server (target_session_attrs still chooses it)');
    return null;
  }
  await loadClassifierModule();
  return new FunctionCatalogs({
    classifier: { allow: [...routing.functions.allow], deny: [...routing.functions.deny] },
    refreshIntervalMs: routing.functions.refreshInterval,
    read: async (request) => {
      const server = await pool.acquire(request);
      try {
        const rows = await server.query(CATALOG_SQL, config.upstream.connectTimeout);
        pool.release(server, 'reusable');
        return rows;
      } catch (err) {
        pool.release(server, server.isClosed ? 'broken' : 'reusable');
        throw err;
      }
    },
    log: logger.child({ component: 'catalog' }),
  });
}

function frontendSettings(config: Config): FrontendSettings {
  const users = new Map<string, StoredCredential>();
  for (const user of config.clientAuth.users) users.set(user.name, storedCredential(user.name, user.password));
  const listenTls = config.listen.tls;
  return {
    loginTimeoutMs: config.listen.loginTimeout,
    maxMessageSize: config.listen.maxMessageSize,
    startupLimits: { maxPacketSize: config.listen.maxStartupPacketSize, maxParameters: 1000 },
    tlsContext:
      listenTls.cert && listenTls.key
        ? tls.createSecureContext({
            cert: readMaterial(listenTls.cert, 'listen.tls.cert'),
            key: readMaterial(listenTls.key, 'listen.tls.key'),
            minVersion: listenTls.minVersion,
          })
        : null,
    tlsRequired: listenTls.required,
    auth: { method: config.clientAuth.method, users, mockSecret: randomBytes(32) },
    upstreamUser: config.upstream.user,
    upstreamDatabase: config.upstream.database,
    poolMode: config.pool.mode,
    statementCapacity: PREPARED_STATEMENTS_PER_SERVER,
    exchangeTimeoutMs: config.upstream.connectTimeout,
  };
}

function upstreamTlsSettings(config: Config): UpstreamTlsSettings {
  const t = config.upstream.tls;
  return {
    mode: t.mode,
    ca: t.ca ? readMaterial(t.ca, 'upstream.tls.ca') : undefined,
    cert: t.cert ? readMaterial(t.cert, 'upstream.tls.cert') : undefined,
    key: t.key ? readMaterial(t.key, 'upstream.tls.key') : undefined,
    serverName: t.serverName,
    minVersion: t.minVersion,
  };
}

function readMaterial(path: string, keyPath: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { keyPath });
  }
}

function credentialProvider(config: Config, env: NodeJS.ProcessEnv): CredentialProvider | null {
  const c = config.upstream.credentials;
  if (!c) return null;
  switch (c.type) {
    case 'password':
      return new StaticPasswordProvider(c.password);
    case 'env':
      return new EnvPasswordProvider(c.variable, env);
    case 'file':
      return new FilePasswordProvider(c.path);
    default:
      throw new ConfigError(`credentials type ${c.type} is not available in this build yet`, { keyPath: 'upstream.credentials.type' });
  }
}

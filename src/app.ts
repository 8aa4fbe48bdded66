// Composition root: turns a validated Config into running parts (credentials, TLS material,
// the server pool, the client listener) and wires them together. No logic of its own beyond
// mapping config onto constructors; it is the only module that knows every other one.

import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import type { Logger } from 'pino';
import { startAdminServer, type AdminServer } from './admin/http.ts';
import { TcpConnector, type Connector } from './backend/connector.ts';
import type { Config } from './config/index.ts';
import { CredentialCache, type CredentialEntrySnapshot } from './credentials/cache.ts';
import { logCredentialEvent, RotationCounters, type RotationEvent } from './credentials/events.ts';
import { credentialProviderFor } from './credentials/from-config.ts';
import { ListenerTlsMaterial, UpstreamTlsMaterial } from './credentials/tls-material.ts';
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

/** What a reload (SIGHUP, POST /reload) did. */
export interface ReloadReport {
  credentials: { refreshed: number; failed: number };
  tls: { upstream: boolean; listen: boolean };
}

export interface Ambassador {
  readonly address: net.AddressInfo;
  /** The admin HTTP endpoint's address. */
  readonly adminAddress: net.AddressInfo;
  readonly logger: Logger;
  readonly listener: Listener;
  /** The health snapshot routing reads: each host's role, state, lag and replayed WAL position. */
  hosts(): readonly HostState[];
  /** Health events so far (host down/up, role changes, failovers, breakers, address changes), for metrics. */
  healthCounters(): HealthCounters;
  /** Credential refreshes and rejections, TLS reloads, for metrics. */
  rotationCounters(): RotationCounters;
  /** Each login's cached secret: when fetched, when it expires, failures (never the secret). */
  credentials(): CredentialEntrySnapshot[];
  /** Re-reads credentials and TLS files now (SIGHUP, POST /reload). */
  reload(reason: string): Promise<ReloadReport>;
  /** Graceful shutdown: drain sessions up to shutdown.timeout, then close the pool. */
  shutdown(): Promise<void>;
}

export async function startAmbassador(config: Config, options: AmbassadorOptions = {}): Promise<Ambassador> {
  const logger = options.logger ?? createLogger({ level: config.logging.level });
  // What has been started, stopped in reverse order at shutdown, or when a later part fails to start.
  const started: Array<() => unknown> = [];
  const stopStarted = async (): Promise<void> => {
    for (const stop of started.splice(0).reverse()) await stop();
  };
  try {
    return await assemble(config, options, logger, started, stopStarted);
  } catch (err) {
    await stopStarted();
    throw err;
  }
}

async function assemble(
  config: Config,
  options: AmbassadorOptions,
  logger: Logger,
  started: Array<() => unknown>,
  stopStarted: () => Promise<void>,
): Promise<Ambassador> {
  const rotationCounters = new RotationCounters();
  const onRotation = (event: RotationEvent): void => rotationCounters.record(event);
  const credentialLog = logger.child({ component: 'credentials' });
  const provider = await credentialProviderFor(config, options.env ?? process.env);
  const credentials = provider
    ? new CredentialCache(provider, {
        onEvent: (event) => {
          onRotation(event);
          logCredentialEvent(credentialLog, event);
        },
      })
    : null;
  started.push(() => credentials?.close());
  const tlsLog = logger.child({ component: 'tls' });
  const upstreamTls = new UpstreamTlsMaterial(config.upstream.tls, { log: tlsLog, onEvent: onRotation });
  started.push(() => upstreamTls.close());
  const listenTls = new ListenerTlsMaterial(config.listen.tls, { log: tlsLog, onEvent: onRotation });
  started.push(() => listenTls.close());
  const hosts: HostEntry[] = config.upstream.hosts.map((h) => ({ host: h.host, port: h.port, role: h.role, weight: h.weight }));
  const routingConfig = config.routing;
  const healthCounters = new HealthCounters();
  const pool = new Pooler({
    connector: options.connector ?? new TcpConnector(),
    hosts,
    tls: () => upstreamTls.current(),
    connectTimeoutMs: config.upstream.connectTimeout,
    credentials,
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
  started.push(() => pool.close());
  const catalogs = await functionCatalogs(config, pool, logger);
  started.push(() => catalogs?.stop());
  // New client connections take the listener's current certificate; the settings object is
  // replaced (never mutated) when it changes, so a session keeps the one it started with.
  let settings = frontendSettings(config, listenTls.current());
  const currentSettings = (): FrontendSettings => {
    const context = listenTls.current();
    if (context !== settings.tlsContext) settings = { ...settings, tlsContext: context };
    return settings;
  };
  const listener = new Listener({
    host: config.listen.host,
    port: config.listen.port,
    maxClientConnections: config.listen.maxClientConnections,
    settings: currentSettings,
    pool,
    routing: { catalogs, readYourWrites: routingConfig.readYourWrites },
    logger,
  });
  // Reloads asked for while one runs share it: a burst of SIGHUPs or POSTs costs one fetch per login.
  let reloading: Promise<ReloadReport> | null = null;
  const reload = (reason: string): Promise<ReloadReport> =>
    (reloading ??= (async () => {
      logger.info({ reason }, 'reloading credentials and TLS material');
      const tls = { upstream: upstreamTls.reload(reason), listen: listenTls.reload(reason) };
      const refreshed = credentials ? await credentials.refreshAll('reload') : { refreshed: 0, failed: 0 };
      return { credentials: refreshed, tls };
    })().finally(() => (reloading = null)));
  pool.startHealth();
  started.push(() => listener.shutdown(0));
  const address = await listener.listen();
  const admin = await startAdminServer({ host: config.admin.host, port: config.admin.port, token: config.admin.token, reload, log: logger.child({ component: 'admin' }) });
  started.push(() => admin.close());
  logger.info(
    {
      listen: `${address.address}:${address.port}`,
      admin: `${admin.address.address}:${admin.address.port}`,
      upstream: hosts.map((h) => `${h.host}:${h.port}`),
      poolMode: config.pool.mode,
      readWriteSplit: catalogs !== null,
      credentials: provider?.kind ?? 'none',
    },
    'pg-ambassador listening',
  );
  let stopping: Promise<void> | null = null;
  return {
    address,
    adminAddress: admin.address,
    logger,
    listener,
    hosts: () => pool.hosts,
    healthCounters: () => healthCounters,
    rotationCounters: () => rotationCounters,
    credentials: () => credentials?.snapshot() ?? [],
    reload,
    shutdown() {
      stopping ??= (async () => {
        logger.info({ sessions: listener.sessions.size, timeoutMs: config.shutdown.timeout }, 'shutting down');
        await listener.shutdown(config.shutdown.timeout);
        await stopStarted();
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

function frontendSettings(config: Config, tlsContext: FrontendSettings['tlsContext']): FrontendSettings {
  const users = new Map<string, StoredCredential>();
  for (const user of config.clientAuth.users) users.set(user.name, storedCredential(user.name, user.password));
  return {
    loginTimeoutMs: config.listen.loginTimeout,
    maxMessageSize: config.listen.maxMessageSize,
    startupLimits: { maxPacketSize: config.listen.maxStartupPacketSize, maxParameters: 1000 },
    tlsContext,
    tlsRequired: config.listen.tls.required,
    auth: { method: config.clientAuth.method, users, mockSecret: randomBytes(32) },
    upstreamUser: config.upstream.user,
    upstreamDatabase: config.upstream.database,
    poolMode: config.pool.mode,
    statementCapacity: PREPARED_STATEMENTS_PER_SERVER,
    exchangeTimeoutMs: config.upstream.connectTimeout,
  };
}

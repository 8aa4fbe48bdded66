// Part of the composition root: building each running part from a config, the same way at
// startup and on reload (app-reload.ts): credential cache, TLS material, function catalogs for
// read/write splitting, the pool's settings, and the settings new client sessions take.

import type { Logger } from 'pino';
import { AdminConsole } from './admin/console.ts';
import { consoleSource, type ObservedParts } from './app-observe.ts';
import type { LiveParts, PartBuilders } from './app-reload.ts';
import type { Config } from './config/index.ts';
import { CredentialCache } from './credentials/cache.ts';
import { logCredentialEvent, type RotationEvent } from './credentials/events.ts';
import { credentialProviderFor } from './credentials/from-config.ts';
import { ListenerTlsMaterial, UpstreamTlsMaterial } from './credentials/tls-material.ts';
import { storedCredential, type StoredCredential } from './frontend/client-auth.ts';
import type { ConsoleAccess } from './frontend/console-session.ts';
import type { FrontendSettings } from './frontend/session.ts';
import { CATALOG_SQL, FunctionCatalogs } from './health/function-catalogs.ts';
import type { Pooler, PoolerSettings } from './pool/pooler.ts';
import { loadClassifierModule } from './router/classifier.ts';
import { VERSION } from './version.ts';

/** Prepared statements kept per server connection in transaction mode (as PgBouncer's default order). */
const PREPARED_STATEMENTS_PER_SERVER = 256;

/** What builders() needs from the composition root. */
export interface BuildContext {
  env: NodeJS.ProcessEnv;
  logger: Logger;
  onRotation: (event: RotationEvent) => void;
  /** The secret behind mock SCRAM challenges for unknown users; stable across reloads. */
  mockSecret: Buffer;
  parts: () => LiveParts;
  observed: () => ObservedParts | null;
}

/** Builds each part from a config, at startup and on reload. */
export function builders(context: BuildContext): PartBuilders {
  const { logger, onRotation, mockSecret, parts, observed } = context;
  const credentialLog = logger.child({ component: 'credentials' });
  const tlsLog = logger.child({ component: 'tls' });
  return {
    async credentials(config) {
      const provider = await credentialProviderFor(config, context.env);
      if (!provider) return null;
      return new CredentialCache(provider, {
        onEvent: (event) => {
          onRotation(event);
          logCredentialEvent(credentialLog, event);
        },
      });
    },
    upstreamTls: (config) => new UpstreamTlsMaterial(config.upstream.tls, { log: tlsLog, onEvent: onRotation }),
    listenTls: (config) => new ListenerTlsMaterial(config.listen.tls, { log: tlsLog, onEvent: onRotation }),
    catalogs: (config) => functionCatalogs(config, () => parts().pool, logger),
    poolerSettings,
    frontendSettings: (config, listenTls) => frontendSettings(config, listenTls.current(), mockSecret, observed),
  };
}

function poolerSettings(config: Config, credentials: CredentialCache | null): PoolerSettings {
  const { routing, health, pool, upstream } = config;
  return {
    hosts: upstream.hosts.map((h) => ({ host: h.host, port: h.port, role: h.role, weight: h.weight })),
    connectTimeoutMs: upstream.connectTimeout,
    credentials,
    pool: {
      size: pool.size,
      minIdle: pool.minIdle,
      idleTimeoutMs: pool.idleTimeout,
      maxLifetimeMs: pool.maxLifetime,
      acquireTimeoutMs: pool.acquireTimeout,
      retry: { max: upstream.retry.max, initialDelayMs: upstream.retry.initialDelay, maxDelayMs: upstream.retry.maxDelay },
    },
    choice: { loadBalance: routing.loadBalance, maxReplicaLag: { ...routing.maxReplicaLag }, readsFromPrimary: routing.readsFromPrimary },
    health: {
      intervalMs: health.interval,
      timeoutMs: health.timeout,
      failureThreshold: health.failureThreshold,
      failoverTimeoutMs: health.failoverTimeout,
      circuitBreaker: { threshold: health.circuitBreaker.threshold, cooldownMs: health.circuitBreaker.cooldown },
    },
    probeLogin: { user: upstream.user, database: upstream.database },
  };
}

/**
 * Read/write splitting needs transaction pooling (a session-mode client keeps one server) and
 * the parser; each database's classifier learns its functions from the primary's pg_proc.
 */
async function functionCatalogs(config: Config, pool: () => Pooler, logger: Logger): Promise<FunctionCatalogs | null> {
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
      const server = await pool().acquire(request);
      try {
        const rows = await server.query(CATALOG_SQL, config.upstream.connectTimeout);
        pool().release(server, 'reusable');
        return rows;
      } catch (err) {
        pool().release(server, server.isClosed ? 'broken' : 'reusable');
        throw err;
      }
    },
    log: logger.child({ component: 'catalog' }),
  });
}

function frontendSettings(config: Config, tlsContext: FrontendSettings['tlsContext'], mockSecret: Buffer, observed: () => ObservedParts | null): FrontendSettings {
  const users = new Map<string, StoredCredential>();
  for (const user of config.clientAuth.users) users.set(user.name, storedCredential(user.name, user.password));
  return {
    loginTimeoutMs: config.listen.loginTimeout,
    maxMessageSize: config.listen.maxMessageSize,
    startupLimits: { maxPacketSize: config.listen.maxStartupPacketSize, maxParameters: config.listen.maxStartupParameters },
    tlsContext,
    tlsRequired: config.listen.tls.required,
    auth: { method: config.clientAuth.method, users, mockSecret },
    upstreamUser: config.upstream.user,
    upstreamDatabase: config.upstream.database,
    poolMode: config.pool.mode,
    statementCapacity: PREPARED_STATEMENTS_PER_SERVER,
    cacheUnnamedStatements: config.pool.cacheUnnamedStatements,
    exchangeTimeoutMs: config.upstream.connectTimeout,
    queryLog: { queries: config.logging.queries, slowQueryThresholdMs: config.logging.slowQueryThreshold },
    logConnections: config.logging.connections,
    console: consoleAccess(config, observed),
    maxClientBuffer: config.listen.maxClientBuffer,
    clientIdleTimeoutMs: config.listen.clientIdleTimeout,
    idleInTransactionTimeoutMs: config.listen.idleInTransactionTimeout,
    userLimits: {
      maxConnections: config.listen.maxClientConnectionsPerUser,
      transactionsPerSecond: config.listen.rateLimit.transactionsPerSecond,
      burst: config.listen.rateLimit.burst,
      maxWaitMs: config.listen.rateLimit.maxWait,
    },
    maxConcurrentCancels: config.listen.maxConcurrentCancels,
  };
}

function consoleAccess(config: Config, observed: () => ObservedParts | null): ConsoleAccess | null {
  if (config.admin.users.length === 0) return null;
  return {
    users: new Set(config.admin.users),
    version: VERSION,
    create: (log) => {
      const parts = observed();
      if (parts === null) throw new Error('the admin console opened before startup finished');
      return new AdminConsole(consoleSource(parts), log);
    },
  };
}


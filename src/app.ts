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
  /** Graceful shutdown: drain sessions up to shutdown.timeout, then close the pool. */
  shutdown(): Promise<void>;
}

export async function startAmbassador(config: Config, options: AmbassadorOptions = {}): Promise<Ambassador> {
  const logger = options.logger ?? createLogger({ level: config.logging.level });
  const credentials = credentialProvider(config, options.env ?? process.env);
  const upstreamTls = upstreamTlsSettings(config);
  const hosts: HostEntry[] = config.upstream.hosts.map((h) => ({ host: h.host, port: h.port, role: h.role }));
  const pool = new Pooler({
    connector: options.connector ?? new TcpConnector(),
    hosts: () => hosts,
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
  });
  const settings = frontendSettings(config);
  const listener = new Listener({
    host: config.listen.host,
    port: config.listen.port,
    maxClientConnections: config.listen.maxClientConnections,
    settings: () => settings,
    pool,
    logger,
  });
  const address = await listener.listen();
  logger.info(
    { listen: `${address.address}:${address.port}`, upstream: hosts.map((h) => `${h.host}:${h.port}`), poolMode: config.pool.mode },
    'pg-ambassador listening',
  );
  let stopping: Promise<void> | null = null;
  return {
    address,
    logger,
    listener,
    shutdown() {
      stopping ??= (async () => {
        logger.info({ sessions: listener.sessions.size, timeoutMs: config.shutdown.timeout }, 'shutting down');
        await listener.shutdown(config.shutdown.timeout);
        await pool.close();
        logger.info('shutdown complete');
      })();
      return stopping;
    },
  };
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

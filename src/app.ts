// Composition root: turns a validated Config into running parts (credentials, TLS material,
// the server pool, the client listener, metrics, the admin endpoint and console) and wires
// them together. No logic of its own beyond mapping config onto constructors and events onto
// observers; it is the only module that knows every other one. Reloads: app-reload.ts; what
// the observers read: app-observe.ts.

import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import type { Logger } from 'pino';
import { startAdminServer } from './admin/http.ts';
import { builders } from './app-build.ts';
import { metricsSource, type ObservedParts } from './app-observe.ts';
import { VERSION } from './version.ts';
import { applyConfig, type LiveParts, type PartBuilders } from './app-reload.ts';
import { TcpConnector, type Connector } from './backend/connector.ts';
import { redactConfig, type Config } from './config/index.ts';
import type { CredentialEntrySnapshot } from './credentials/cache.ts';
import { RotationCounters, type RotationEvent } from './credentials/events.ts';
import { ConfigError } from './errors.ts';
import { Listener } from './frontend/listener.ts';
import type { FrontendSettings } from './frontend/session.ts';
import { TrafficStats } from './frontend/traffic.ts';
import type { FunctionCatalogs } from './health/function-catalogs.ts';
import { HealthCounters } from './health/events.ts';
import type { HostState } from './health/monitor.ts';
import { FileWatch } from './lib/file-watch.ts';
import { createLogger } from './lib/logger.ts';
import { AmbassadorMetrics } from './metrics/metrics.ts';
import { Pooler } from './pool/pooler.ts';
import { startupWarnings } from './startup-warnings.ts';

/** SHOW STATS' averages cover this period (PgBouncer's stats_period). */
const STATS_PERIOD_MS = 60_000;

export { VERSION };

export interface AmbassadorOptions {
  logger?: Logger;
  connector?: Connector;
  env?: NodeJS.ProcessEnv;
  /** Reads the config again (file, environment, flags) for a reload; without it reloads only re-read secrets and TLS files. */
  reloadConfig?: () => Config;
  /** The config file, watched: a change reloads. */
  configFile?: string;
  /** POST /quitquitquit: the process should shut down and exit (main.ts); default: shutdown() only. */
  quit?: (reason: string) => void;
}

/** What a reload (SIGHUP, a config file change, POST /reload, RELOAD) did. */
export interface ReloadReport {
  config: { ok: true; changed: string[]; restartRequired: string[] } | { ok: false; error: string };
  credentials: { refreshed: number; failed: number };
  tls: { upstream: boolean; listen: boolean };
}

export interface Ambassador {
  readonly address: net.AddressInfo;
  /** The admin HTTP endpoint's address. */
  readonly adminAddress: net.AddressInfo;
  readonly logger: Logger;
  readonly listener: Listener;
  readonly pool: Pooler;
  readonly metrics: AmbassadorMetrics;
  /** The config in effect now (restart-only keys as started). */
  config(): Config;
  /** The health snapshot routing reads: each host's role, state, lag and replayed WAL position. */
  hosts(): readonly HostState[];
  /** Health events so far (host down/up, role changes, failovers, breakers, address changes). */
  healthCounters(): HealthCounters;
  /** Credential refreshes and rejections, TLS reloads. */
  rotationCounters(): RotationCounters;
  /** Each login's cached secret: when fetched, when it expires, failures (never the secret). */
  credentials(): CredentialEntrySnapshot[];
  /** /readyz: a primary is known and an upstream login worked within the last health interval. */
  readiness(): Promise<{ ready: boolean; reason: string }>;
  /** Re-reads the config (when it came from a file), credentials and TLS files. */
  reload(reason: string): Promise<ReloadReport>;
  /**
   * Graceful shutdown: with acceptGrace (SIGTERM), new clients are still accepted for
   * shutdown.acceptGrace while /readyz says 503; then sessions drain for the rest of
   * shutdown.timeout and the pool closes.
   */
  shutdown(options?: { acceptGrace?: boolean }): Promise<void>;
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
  const healthCounters = new HealthCounters();
  // The metrics read the parts through `parts`, which exists once they do; nothing scrapes before.
  let observed: ObservedParts | null = null;
  const metrics = new AmbassadorMetrics(metricsSource(() => observed), { version: VERSION });
  const traffic = new TrafficStats(metrics);
  const onRotation = (event: RotationEvent): void => {
    rotationCounters.record(event);
    metrics.rotationEvent(event);
  };
  const mockSecret = randomBytes(32);
  const build = builders({ env: options.env ?? process.env, logger, onRotation, mockSecret, parts: () => parts, observed: () => observed });
  const credentials = await build.credentials(config);
  // Until `parts` exists (a later part may fail to start), the cleanups close the first ones built.
  let live: LiveParts | null = null;
  started.push(() => (live?.credentials ?? credentials)?.close());
  const upstreamTls = build.upstreamTls(config);
  started.push(() => (live?.upstreamTls ?? upstreamTls).close());
  const listenTls = build.listenTls(config);
  started.push(() => (live?.listenTls ?? listenTls).close());
  const pool = new Pooler({
    ...build.poolerSettings(config, credentials),
    connector: options.connector ?? new TcpConnector(),
    tls: () => parts.upstreamTls.current(),
    maxMessageSize: config.listen.maxMessageSize,
    log: logger,
    onEvent: (event) => metrics.poolEvent(event),
    onHealthEvent: (event) => {
      healthCounters.record(event);
      metrics.healthEvent(event);
    },
  });
  started.push(() => pool.close());
  const routing = { catalogs: null as FunctionCatalogs | null, readYourWrites: config.routing.readYourWrites };
  const listener = new Listener({
    host: config.listen.host,
    port: config.listen.port,
    maxClientConnections: config.listen.maxClientConnections,
    settings: () => currentSettings(),
    pool,
    routing,
    traffic,
    onPin: (reason) => metrics.pinnedSession(reason),
    logger,
  });
  const parts: LiveParts = { config, logger, pool, listener, routing, credentials, upstreamTls, listenTls, settings: build.frontendSettings(config, listenTls) };
  live = parts;
  // New client connections take the listener's current certificate; the settings object is
  // replaced (never mutated) when it changes, so a session keeps the one it started with.
  const currentSettings = (): FrontendSettings => {
    const context = parts.listenTls.current();
    if (context !== parts.settings.tlsContext) parts.settings = { ...parts.settings, tlsContext: context };
    return parts.settings;
  };
  routing.catalogs = await build.catalogs(config);
  started.push(() => routing.catalogs?.stop());

  const reload = reloader(parts, build, options, metrics);
  observed = {
    version: VERSION,
    config: () => parts.config,
    listener,
    pool,
    traffic,
    routing,
    credentials: () => parts.credentials?.snapshot() ?? [],
    reload,
  };
  const statsTimer = setInterval(() => traffic.sample(), STATS_PERIOD_MS).unref();
  started.push(() => clearInterval(statsTimer));

  let startupDone = false;
  let draining = false;
  const readiness = async (): Promise<{ ready: boolean; reason: string }> => {
    if (!startupDone) return { ready: false, reason: 'starting' };
    if (draining) return { ready: false, reason: 'shutting down' };
    return upstreamReadiness(pool, parts.config);
  };
  let stopping: Promise<void> | null = null;
  let self: Ambassador | null = null;
  const quit = options.quit ?? (() => void self?.shutdown());
  // The admin endpoint answers from the start (/startupz says 503 until the listener is up).
  const admin = await startAdminServer({
    host: config.admin.host,
    port: config.admin.port,
    token: () => parts.config.admin.token,
    reload,
    metrics: async () => ({ contentType: metrics.contentType, body: await metrics.metrics() }),
    ready: readiness,
    started: () => startupDone,
    config: () => redactConfig(parts.config),
    quit,
    log: logger.child({ component: 'admin' }),
  });
  started.push(() => admin.close());

  pool.startHealth();
  started.push(() => listener.shutdown(0));
  const address = await listener.listen();
  if (options.configFile !== undefined && options.reloadConfig !== undefined) {
    const watch = new FileWatch([options.configFile], () => void reload('config file changed'));
    started.push(() => watch.close());
  }
  startupDone = true;
  for (const warning of startupWarnings(config)) logger.warn(warning.fields, warning.message);
  logger.info(
    {
      version: VERSION,
      node: process.version,
      listen: `${address.address}:${address.port}`,
      admin: `${admin.address.address}:${admin.address.port}`,
      upstream: config.upstream.hosts.map((h) => `${h.host}:${h.port}`),
      poolMode: config.pool.mode,
      readWriteSplit: routing.catalogs !== null,
      credentials: config.upstream.credentials?.type ?? 'none',
    },
    'pg-ambassador listening',
  );

  const ambassador: Ambassador = {
    address,
    adminAddress: admin.address,
    logger,
    listener,
    pool,
    metrics,
    config: () => parts.config,
    hosts: () => pool.hosts,
    healthCounters: () => healthCounters,
    rotationCounters: () => rotationCounters,
    credentials: () => parts.credentials?.snapshot() ?? [],
    readiness,
    reload,
    shutdown(shutdownOptions = {}) {
      stopping ??= (async () => {
        const { timeout, acceptGrace } = parts.config.shutdown;
        const grace = shutdownOptions.acceptGrace ? acceptGrace : 0;
        draining = true;
        if (grace > 0) {
          // Kubernetes signals every container of a pod at once: the app may still open
          // connections while its endpoints are being removed.
          logger.info({ acceptGraceMs: grace }, 'shutting down: still accepting clients for shutdown.acceptGrace');
          await new Promise((resolve) => setTimeout(resolve, grace));
        }
        logger.info({ sessions: listener.sessions.size, timeoutMs: timeout - grace }, 'shutting down: draining sessions');
        await listener.shutdown(timeout - grace);
        await stopStarted();
        logger.info('shutdown complete');
      })();
      return stopping;
    },
  };
  self = ambassador;
  return ambassador;
}

/** Readiness from the pool's view: a usable primary, and an upstream login that works. */
async function upstreamReadiness(pool: Pooler, config: Config): Promise<{ ready: boolean; reason: string }> {
  const primary = pool.hosts.find((h) => h.role === 'primary' && h.up && h.breaker !== 'open');
  if (primary === undefined) return { ready: false, reason: 'no primary known' };
  const { okAt } = pool.lastLogin;
  const sinceOk = okAt === null ? null : pool.now() - okAt;
  if (sinceOk !== null && sinceOk <= config.health.interval) return { ready: true, reason: `ready: primary ${primary.id}, upstream login ${Math.round(sinceOk)} ms ago` };
  try {
    await pool.checkLogin(config.health.timeout);
    return { ready: true, reason: `ready: primary ${primary.id}, upstream login checked now` };
  } catch (err) {
    return { ready: false, reason: `upstream login failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** Reloads asked for while one runs share the next run: a burst costs one more run, none is lost. */
function reloader(parts: LiveParts, build: PartBuilders, options: AmbassadorOptions, metrics: AmbassadorMetrics): (reason: string) => Promise<ReloadReport> {
  const log = parts.logger;
  const run = async (reason: string): Promise<ReloadReport> => {
    log.info({ reason }, 'reloading');
    let config: ReloadReport['config'] = { ok: true, changed: [], restartRequired: [] };
    if (options.reloadConfig) {
      try {
        const applied = await applyConfig(parts, options.reloadConfig(), build);
        config = { ok: true, changed: applied.changed, restartRequired: applied.restartRequired };
        metrics.configReload('ok');
        if (applied.restartRequired.length > 0) log.warn({ keys: applied.restartRequired }, 'changed settings need a restart to take effect; the old values stay in force');
        log.info({ changed: applied.changed, hosts: applied.hosts }, applied.changed.length > 0 ? 'configuration reloaded' : 'configuration reloaded: nothing changed');
      } catch (err) {
        const error = err instanceof ConfigError || err instanceof Error ? err.message : String(err);
        config = { ok: false, error };
        metrics.configReload('failed');
        log.error({ reason, error }, 'configuration reload failed: the current configuration stays in force');
      }
    }
    const tls = { upstream: parts.upstreamTls.reload(reason), listen: parts.listenTls.reload(reason) };
    const refreshed = parts.credentials ? await parts.credentials.refreshAll('reload') : { refreshed: 0, failed: 0 };
    return { config, credentials: refreshed, tls };
  };
  let running: Promise<ReloadReport> | null = null;
  let queued: Promise<ReloadReport> | null = null;
  const reload = (reason: string): Promise<ReloadReport> => {
    if (running === null) {
      running = run(reason).finally(() => (running = null));
      return running;
    }
    queued ??= running.then(
      () => ((queued = null), reload(reason)),
      () => ((queued = null), reload(reason)),
    );
    return queued;
  };
  return reload;
}

// Part of the composition root: applying a new config to the running parts (SIGHUP, a change of
// the config file, POST /reload, the console's RELOAD). The new config was validated whole by
// the loader; here everything that can still fail (credential providers, TLS files, the parser
// for read/write splitting) is built first, and only then is anything swapped, so a reload
// either takes effect entirely or not at all. Client connections are never dropped: pools are
// resized, hosts added or drained as on failover, and new settings apply to new sessions (query
// logging and the log level at once). Keys that need a restart keep their old value in the
// effective config and are reported.

import type { Logger } from 'pino';
import type { Config } from './config/index.ts';
import { deepFreeze } from './config/load.ts';
import type { CredentialCache } from './credentials/cache.ts';
import type { ListenerTlsMaterial, UpstreamTlsMaterial } from './credentials/tls-material.ts';
import type { RoutingContext } from './frontend/client-routing.ts';
import type { Listener } from './frontend/listener.ts';
import type { FrontendSettings } from './frontend/session.ts';
import type { FunctionCatalogs } from './health/function-catalogs.ts';
import type { HostChanges, Pooler, PoolerSettings } from './pool/pooler.ts';

/** Keys a running ambassador cannot change: sockets already bound, the pooling mode of live sessions, the log stream. */
const RESTART_KEYS = ['listen.host', 'listen.port', 'admin.host', 'admin.port', 'pool.mode', 'logging.format'] as const;

/** Keys whose whole list (or object) counts as one value when comparing configs. */
const WHOLE_KEYS = new Set(['upstream.hosts', 'upstream.credentials', 'clientAuth.users', 'admin.users', 'routing.maxReplicaLag', 'routing.functions.allow', 'routing.functions.deny']);

export function restartRequired(path: string): boolean {
  return RESTART_KEYS.some((key) => path === key || path.startsWith(`${key}.`));
}

/** A config value as SHOW CONFIG prints it. */
export function formatConfigValue(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'object' && !Array.isArray(value)) {
    const lag = value as { ms?: number; bytes?: number };
    if (lag.ms !== undefined) return `${lag.ms}ms`;
    if (lag.bytes !== undefined) return `${lag.bytes}B`;
  }
  if (Array.isArray(value)) return value.map((item) => (typeof item === 'object' ? JSON.stringify(item) : String(item))).join(', ');
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function leaves(value: unknown, path = '', out = new Map<string, string>()): Map<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !WHOLE_KEYS.has(path)) {
    for (const [key, item] of Object.entries(value)) leaves(item, path === '' ? key : `${path}.${key}`, out);
  } else if (value !== undefined) {
    out.set(path, JSON.stringify(value));
  }
  return out;
}

/** The key paths whose values differ between two configs (a list or credentials block is one key). */
export function changedKeys(prev: Config, next: Config): string[] {
  const before = leaves(prev);
  const after = leaves(next);
  const keys = new Set([...before.keys(), ...after.keys()]);
  return [...keys].filter((key) => before.get(key) !== after.get(key)).sort();
}

/** `next` with the restart-only keys as they are in `prev` (what actually runs). */
function effectiveConfig(prev: Config, next: Config): Config {
  const copy = structuredClone(next) as unknown as Record<string, Record<string, unknown>>;
  const old = prev as unknown as Record<string, Record<string, unknown>>;
  for (const key of RESTART_KEYS) {
    const [section, name] = key.split('.') as [string, string];
    copy[section]![name] = old[section]![name];
  }
  return deepFreeze(copy) as unknown as Config;
}

/** What the composition root builds from a config (the same functions startup uses). */
export interface PartBuilders {
  credentials(config: Config): Promise<CredentialCache | null>;
  upstreamTls(config: Config): UpstreamTlsMaterial;
  listenTls(config: Config): ListenerTlsMaterial;
  catalogs(config: Config): Promise<FunctionCatalogs | null>;
  poolerSettings(config: Config, credentials: CredentialCache | null): PoolerSettings;
  frontendSettings(config: Config, listenTls: ListenerTlsMaterial): FrontendSettings;
}

/** The running parts a reload may replace or reconfigure (mutated in place). */
export interface LiveParts {
  config: Config;
  logger: Logger;
  pool: Pooler;
  listener: Listener;
  routing: RoutingContext & { catalogs: FunctionCatalogs | null };
  credentials: CredentialCache | null;
  upstreamTls: UpstreamTlsMaterial;
  listenTls: ListenerTlsMaterial;
  settings: FrontendSettings;
}

export interface AppliedConfig {
  changed: string[];
  restartRequired: string[];
  hosts: HostChanges;
}

const starts = (keys: readonly string[], prefix: string): boolean => keys.some((key) => key === prefix || key.startsWith(`${prefix}.`));

/** Applies `next` to `parts`; throws (with nothing changed) when a part cannot be built. */
export async function applyConfig(parts: LiveParts, next: Config, build: PartBuilders): Promise<AppliedConfig> {
  const prev = parts.config;
  const restart = changedKeys(prev, next).filter(restartRequired);
  const config = effectiveConfig(prev, next);
  const changed = changedKeys(prev, config);
  const fresh: { credentials?: CredentialCache | null; upstreamTls?: UpstreamTlsMaterial; listenTls?: ListenerTlsMaterial; catalogs?: FunctionCatalogs | null } = {};
  try {
    if (starts(changed, 'upstream.credentials')) fresh.credentials = await build.credentials(config);
    if (starts(changed, 'upstream.tls')) fresh.upstreamTls = build.upstreamTls(config);
    if (starts(changed, 'listen.tls')) fresh.listenTls = build.listenTls(config);
    if (starts(changed, 'routing.readWriteSplit') || starts(changed, 'routing.functions')) fresh.catalogs = await build.catalogs(config);
  } catch (err) {
    fresh.credentials?.close();
    fresh.upstreamTls?.close();
    fresh.listenTls?.close();
    fresh.catalogs?.stop();
    throw err;
  }
  // From here on nothing fails: swap.
  parts.logger.level = config.logging.level;
  const retired: Array<{ close?: () => void; stop?: () => void } | null> = [];
  if (fresh.upstreamTls) {
    retired.push(parts.upstreamTls);
    parts.upstreamTls = fresh.upstreamTls;
  }
  if (fresh.listenTls) {
    retired.push(parts.listenTls);
    parts.listenTls = fresh.listenTls;
  }
  if (fresh.credentials !== undefined) {
    // Connects under way finish with the cache they started with: close it once they are done.
    const old = parts.credentials;
    if (old !== null) setTimeout(() => old.close(), prev.upstream.connectTimeout).unref();
    parts.credentials = fresh.credentials;
  }
  const hosts = parts.pool.reconfigure(build.poolerSettings(config, parts.credentials));
  parts.routing.readYourWrites = config.routing.readYourWrites;
  if (fresh.catalogs !== undefined) {
    retired.push(parts.routing.catalogs);
    parts.routing.catalogs = fresh.catalogs;
  }
  parts.settings = build.frontendSettings(config, parts.listenTls);
  parts.listener.reconfigure({ maxClientConnections: config.listen.maxClientConnections, settings: parts.settings });
  parts.config = config;
  for (const part of retired) {
    part?.close?.();
    part?.stop?.();
  }
  return { changed, restartRequired: restart, hosts };
}

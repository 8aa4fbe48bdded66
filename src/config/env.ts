// Environment-only configuration, for sidecars run without a file: reads UPSTREAM_HOST and friends
// into a partial config input (the layer between defaults and the file). Each variable is checked
// here, so a bad value is reported by its variable name; an empty variable counts as unset.
// `sources` records which variable set which key path, so later errors can be attributed.

import { ConfigError } from '../errors.ts';
import type { Environment, KeyPath } from './interpolate.ts';
import { LOG_FORMATS, LOG_LEVELS, POOL_MODES, UPSTREAM_TLS_MODES } from './schema.ts';
import { describeValue, toBoolean, toInteger } from './values.ts';

export interface EnvironmentLayer {
  /** Partial config input built from the variables that are set. */
  readonly input: Record<string, unknown>;
  /** Which variable set which key path. */
  readonly sources: readonly { readonly path: KeyPath; readonly variable: string }[];
}

interface SimpleVariable {
  readonly variable: string;
  readonly path: KeyPath;
  readonly expected: string;
  readonly parse: (raw: string) => unknown;
}

const text = (raw: string) => raw;
const integer = (min: number, max: number) => (raw: string) => toInteger(raw, min, max);
const oneOf = (values: readonly string[]) => (raw: string) => {
  const lowered = raw.trim().toLowerCase();
  return values.includes(lowered) ? lowered : undefined;
};

const SIMPLE_VARIABLES: readonly SimpleVariable[] = [
  { variable: 'UPSTREAM_USER', path: ['upstream', 'user'], expected: 'expected a user name', parse: text },
  { variable: 'UPSTREAM_DATABASE', path: ['upstream', 'database'], expected: 'expected a database name', parse: text },
  { variable: 'LISTEN_HOST', path: ['listen', 'host'], expected: 'expected a host name or address', parse: text },
  { variable: 'LISTEN_PORT', path: ['listen', 'port'], expected: 'expected an integer 0-65535', parse: integer(0, 65535) },
  { variable: 'ADMIN_HOST', path: ['admin', 'host'], expected: 'expected a host name or address', parse: text },
  { variable: 'ADMIN_PORT', path: ['admin', 'port'], expected: 'expected an integer 0-65535', parse: integer(0, 65535) },
  { variable: 'ADMIN_TOKEN', path: ['admin', 'token'], expected: 'expected a token', parse: text },
  {
    variable: 'RETRY_MAX',
    path: ['upstream', 'retry', 'max'],
    expected: 'expected a non-negative integer',
    parse: integer(0, Number.MAX_SAFE_INTEGER),
  },
  {
    variable: 'CIRCUIT_BREAKER_THRESHOLD',
    path: ['health', 'circuitBreaker', 'threshold'],
    expected: 'expected a positive integer',
    parse: integer(1, Number.MAX_SAFE_INTEGER),
  },
  { variable: 'POOL_MODE', path: ['pool', 'mode'], expected: `expected ${POOL_MODES.join(' | ')}`, parse: oneOf(POOL_MODES) },
  {
    variable: 'POOL_SIZE',
    path: ['pool', 'size'],
    expected: 'expected a positive integer',
    parse: integer(1, Number.MAX_SAFE_INTEGER),
  },
  { variable: 'LOG_LEVEL', path: ['logging', 'level'], expected: `expected ${LOG_LEVELS.join(' | ')}`, parse: oneOf(LOG_LEVELS) },
  { variable: 'LOG_FORMAT', path: ['logging', 'format'], expected: `expected ${LOG_FORMATS.join(' | ')}`, parse: oneOf(LOG_FORMATS) },
  {
    variable: 'TLS_MODE',
    path: ['upstream', 'tls', 'mode'],
    expected: `expected ${UPSTREAM_TLS_MODES.join(' | ')}`,
    parse: oneOf(UPSTREAM_TLS_MODES),
  },
  { variable: 'TLS_CA_FILE', path: ['upstream', 'tls', 'ca'], expected: 'expected a file path', parse: text },
];

/** Credential types UPSTREAM_CREDENTIALS may name: the ones that need no further settings. */
const CREDENTIALS_BY_NAME = ['aws-rds-iam', 'gcp-cloudsql-iam', 'azure-ad'] as const;

/** Variables that each choose upstream.credentials; at most one may be set. */
const CREDENTIAL_VARIABLES = ['UPSTREAM_PASSWORD', 'UPSTREAM_PASSWORD_FILE', 'UPSTREAM_CREDENTIALS'] as const;

/** Every variable this layer reads (PG_AMBASSADOR_CONFIG, read by the CLI, names the file instead). */
export const ENVIRONMENT_VARIABLES: readonly string[] = [
  ...SIMPLE_VARIABLES.map((spec) => spec.variable),
  'UPSTREAM_HOST',
  'UPSTREAM_PORT',
  'TLS_ENABLED',
  ...CREDENTIAL_VARIABLES,
];

function envError(variable: string, expected: string, raw: string): ConfigError {
  return new ConfigError(`environment ${variable}: ${expected}, got ${describeValue(raw)}`);
}

function setPath(target: Record<string, unknown>, path: KeyPath, value: unknown): void {
  let node = target;
  path.slice(0, -1).forEach((key) => {
    node[key] ??= {};
    node = node[key] as Record<string, unknown>;
  });
  node[path[path.length - 1]!] = value;
}

const HOST_LIST_EXPECTED = 'expected a comma-separated list of host[:port] (IPv6 as [::1]:5432)';

/** One UPSTREAM_HOST entry: `db`, `db:5433`, `[::1]`, `[::1]:5433`, or a bare IPv6 address. */
function parseHostEntry(entry: string, defaultPort: number | undefined): { host: string; port?: number } | undefined {
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]\s]+)\](?::(.*))?$/.exec(entry);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else if (entry.split(':').length > 2 || !entry.includes(':')) {
    host = entry; // a bare IPv6 address cannot carry a port; a plain name has none
  } else {
    [host, portText] = entry.split(':') as [string, string];
  }
  if (host.length === 0 || /[\s[\]]/.test(host)) return undefined;
  if (portText === undefined) return defaultPort === undefined ? { host } : { host, port: defaultPort };
  const port = toInteger(portText, 1, 65535);
  return port === undefined ? undefined : { host, port };
}

/** UPSTREAM_HOST, with UPSTREAM_PORT as the port of entries that name none. */
function readHosts(env: Environment): { host: string; port?: number }[] | undefined {
  const list = env.UPSTREAM_HOST;
  if (!list) return undefined; // UPSTREAM_PORT alone is ignored: it only qualifies UPSTREAM_HOST
  let defaultPort: number | undefined;
  const portRaw = env.UPSTREAM_PORT;
  if (portRaw) {
    defaultPort = toInteger(portRaw, 1, 65535);
    if (defaultPort === undefined) throw envError('UPSTREAM_PORT', 'expected an integer 1-65535', portRaw);
  }
  const entries = list.split(',').map((entry) => entry.trim()).filter((entry) => entry.length > 0);
  if (entries.length === 0) throw envError('UPSTREAM_HOST', HOST_LIST_EXPECTED, list);
  return entries.map((entry) => {
    const parsed = parseHostEntry(entry, defaultPort);
    if (!parsed) throw envError('UPSTREAM_HOST', HOST_LIST_EXPECTED, entry);
    return parsed;
  });
}

/** TLS_ENABLED true means mode `require` (unless TLS_MODE is set), false means `disable`. */
function readTlsEnabled(env: Environment): string | undefined {
  const raw = env.TLS_ENABLED;
  if (!raw || env.TLS_MODE) return undefined;
  const lowered = raw.trim().toLowerCase();
  const enabled = lowered === '1' ? true : lowered === '0' ? false : toBoolean(lowered);
  if (enabled === undefined) throw envError('TLS_ENABLED', 'expected true or false', raw);
  return enabled ? 'require' : 'disable';
}

/**
 * UPSTREAM_PASSWORD (a fixed password), UPSTREAM_PASSWORD_FILE (re-read when it changes, as a
 * mounted Kubernetes secret) or UPSTREAM_CREDENTIALS (an IAM token provider by name).
 */
function readCredentials(env: Environment): { variable: string; value: Record<string, unknown> } | undefined {
  const set = CREDENTIAL_VARIABLES.filter((variable) => env[variable]);
  if (set.length > 1) throw new ConfigError(`environment ${set.join(' and ')}: set only one of ${CREDENTIAL_VARIABLES.join(', ')}`);
  const [variable] = set;
  if (variable === undefined) return undefined;
  const raw = env[variable]!;
  if (variable === 'UPSTREAM_PASSWORD') return { variable, value: { type: 'password', password: raw } };
  if (variable === 'UPSTREAM_PASSWORD_FILE') return { variable, value: { type: 'file', path: raw } };
  const type = oneOf(CREDENTIALS_BY_NAME)(raw);
  if (type === undefined) throw envError(variable, `expected ${CREDENTIALS_BY_NAME.join(' | ')}`, raw);
  return { variable, value: { type } };
}

/** Reads the environment-only configuration layer. Throws ConfigError naming the variable. */
export function readEnvironment(env: Environment): EnvironmentLayer {
  const input: Record<string, unknown> = {};
  const sources: { path: KeyPath; variable: string }[] = [];
  const set = (variable: string, path: KeyPath, value: unknown) => {
    setPath(input, path, value);
    sources.push({ path, variable });
  };
  for (const spec of SIMPLE_VARIABLES) {
    const raw = env[spec.variable];
    if (!raw) continue;
    const value = spec.parse(raw);
    if (value === undefined) throw envError(spec.variable, spec.expected, raw);
    set(spec.variable, spec.path, value);
  }
  const hosts = readHosts(env);
  if (hosts) set('UPSTREAM_HOST', ['upstream', 'hosts'], hosts);
  const credentials = readCredentials(env);
  if (credentials) set(credentials.variable, ['upstream', 'credentials'], credentials.value);
  const tlsMode = readTlsEnabled(env);
  if (tlsMode) set('TLS_ENABLED', ['upstream', 'tls', 'mode'], tlsMode);
  return { input, sources };
}

// The config schema (zod): the one description of every key, its type and its cross-field rules.
// Every object is strict (unknown keys are errors); every default comes from DEFAULTS
// (defaults.ts) through `.prefault`, so defaults are parsed exactly like user input.
// Scalars accept what YAML and `${VAR}` interpolation produce: numeric strings become numbers,
// "true"/"false" booleans; durations become integer ms, sizes integer bytes. Error messages say
// what was expected and what was given, except for secrets, whose values never appear.

import { z } from 'zod';
import { DEFAULTS } from './defaults.ts';
import {
  BYTE_SIZE_EXPECTED,
  DURATION_EXPECTED,
  REPLICA_LAG_EXPECTED,
  classifyPassword,
  describeValue,
  toBoolean,
  toByteSize,
  toDurationMs,
  toInteger,
  toReplicaLag,
  type ReplicaLag,
} from './values.ts';

export { DEFAULTS };

const D = DEFAULTS;

export const CLIENT_AUTH_METHODS = ['trust', 'scram-sha-256', 'md5'] as const;
export const HOST_ROLES = ['auto', 'primary', 'replica'] as const;
export const UPSTREAM_TLS_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
export const POOL_MODES = ['session', 'transaction'] as const;
export const LOAD_BALANCE_POLICIES = ['round-robin', 'random', 'least-connections'] as const;
export const READ_YOUR_WRITES_MODES = ['off', 'lsn'] as const;
export const READS_FROM_PRIMARY = ['fallback', 'never', 'always'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const LOG_FORMATS = ['json', 'pretty'] as const;
export const QUERY_LOGGING = ['off', 'slow', 'all'] as const;

// ---- scalar building blocks ------------------------------------------------------------------

/**
 * A leaf value: `parse` returns the normalised value or undefined when `value` is unacceptable.
 * `In` is the input type callers (flags) may pass. Secret values are never echoed in messages.
 */
function scalar<Out, In = Out>(
  expected: string,
  parse: (value: unknown) => Out | undefined,
  opts: { secret?: boolean } = {},
): z.ZodType<Out, In> {
  return z.unknown().transform((value, ctx) => {
    if (value === undefined) {
      ctx.addIssue({ code: 'custom', message: 'required, but not set' });
      return z.NEVER;
    }
    const parsed = parse(value);
    if (parsed !== undefined) return parsed;
    const got = opts.secret ? (typeof value === 'string' ? '' : `, got a ${typeof value}`) : `, got ${describeValue(value)}`;
    ctx.addIssue({ code: 'custom', message: `${expected}${got}` });
    return z.NEVER;
  }) as unknown as z.ZodType<Out, In>;
}

/** An optional value where an empty string (e.g. from `${VAR:-}`) or null means "not set". */
function optional<Out, In>(schema: z.ZodType<Out, In>): z.ZodOptional<z.ZodType<Out, In>> {
  const emptyAsUnset = z.preprocess((value) => (value === '' || value === null ? undefined : value), schema.optional());
  return emptyAsUnset.optional() as unknown as z.ZodOptional<z.ZodType<Out, In>>;
}

const int = (min: number, expected: string) =>
  scalar<number, number | string>(expected, (value) => toInteger(value, min, Number.MAX_SAFE_INTEGER));
const positiveInt = int(1, 'expected a positive integer');
const nonNegativeInt = int(0, 'expected a non-negative integer');
const port = scalar<number, number | string>('expected an integer 1-65535', (value) => toInteger(value, 1, 65535));
const listenPort = scalar<number, number | string>('expected an integer 0-65535 (0: chosen by the OS)', (value) =>
  toInteger(value, 0, 65535),
);
const bool = scalar<boolean, boolean | string>('expected true or false', toBoolean);

const nonEmptyString = (value: unknown) => (typeof value === 'string' && value.length > 0 ? value : undefined);
const text = scalar<string>('expected a non-empty string', nonEmptyString);
const secretText = scalar<string>('expected a non-empty string (quote numbers)', nonEmptyString, { secret: true });
const hostname = scalar<string>('expected a host name or address without spaces', (value) =>
  typeof value === 'string' && /^\S+$/.test(value) ? value : undefined,
);
const envVariableName = scalar<string>('expected an environment variable name', (value) =>
  typeof value === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(value) ? value : undefined,
);

function oneOf<const T extends readonly string[]>(values: T): z.ZodType<T[number], T[number]> {
  return scalar<T[number]>(`expected one of ${values.join(' | ')}`, (value) =>
    typeof value === 'string' && values.includes(value) ? value : undefined,
  );
}

/** A duration in integer ms; `min` 1 refuses zero. */
function duration(min: 0 | 1 = 0): z.ZodType<number, number | string> {
  const expected = min === 0 ? DURATION_EXPECTED : DURATION_EXPECTED.replace('a duration', 'a non-zero duration');
  return scalar(expected, (value) => {
    const ms = toDurationMs(value);
    return ms !== undefined && ms >= min ? ms : undefined;
  });
}

const byteSize = scalar<number, number | string>(BYTE_SIZE_EXPECTED.replace('a size', 'a non-zero size'), (value) => {
  const bytes = toByteSize(value);
  return bytes !== undefined && bytes > 0 ? bytes : undefined;
});
const replicaLag = scalar<ReplicaLag, number | string>(REPLICA_LAG_EXPECTED, toReplicaLag);

const userPassword = scalar<string>(
  'expected a plaintext password, an md5 hash (md5 + 32 hex digits) or a SCRAM verifier ' +
    '(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)',
  (value) => (typeof value === 'string' && value.length > 0 && classifyPassword(value) ? value : undefined),
  { secret: true },
);

const command = scalar<string | string[]>('expected a command line or a non-empty list of arguments', (value) => {
  if (typeof value === 'string') return value.trim().length > 0 ? value : undefined;
  const isArgv = Array.isArray(value) && value.length > 0 && value.every((arg) => typeof arg === 'string');
  return isArgv && (value[0] as string).length > 0 ? (value as string[]) : undefined;
});

type RefineContext = z.RefinementCtx;
const issue = (ctx: RefineContext, path: (string | number)[], message: string) =>
  ctx.addIssue({ code: 'custom', path, message });

// ---- listen and clientAuth ------------------------------------------------------------------

const listenTls = z
  .strictObject({
    cert: optional(text),
    key: optional(text),
    minVersion: oneOf(TLS_VERSIONS).prefault(D.listen.tls.minVersion),
    required: bool.prefault(D.listen.tls.required),
  })
  .superRefine((tls, ctx) => {
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      issue(ctx, [tls.cert === undefined ? 'cert' : 'key'], 'listen.tls.cert and listen.tls.key must be set together');
    } else if (tls.required && tls.cert === undefined) {
      issue(ctx, ['required'], 'TLS cannot be required without listen.tls.cert and listen.tls.key');
    }
  });

const listen = z.strictObject({
  host: hostname.prefault(D.listen.host),
  port: listenPort.prefault(D.listen.port),
  maxClientConnections: positiveInt.prefault(D.listen.maxClientConnections),
  loginTimeout: duration(1).prefault(D.listen.loginTimeout),
  maxMessageSize: byteSize.prefault(D.listen.maxMessageSize),
  maxStartupPacketSize: byteSize.prefault(D.listen.maxStartupPacketSize),
  maxStartupParameters: positiveInt.prefault(D.listen.maxStartupParameters),
  maxClientConnectionsPerUser: nonNegativeInt.prefault(D.listen.maxClientConnectionsPerUser),
  clientIdleTimeout: duration().prefault(D.listen.clientIdleTimeout),
  idleInTransactionTimeout: duration().prefault(D.listen.idleInTransactionTimeout),
  maxClientBuffer: byteSize.prefault(D.listen.maxClientBuffer),
  maxConcurrentCancels: positiveInt.prefault(D.listen.maxConcurrentCancels),
  rateLimit: z
    .strictObject({
      transactionsPerSecond: nonNegativeInt.prefault(D.listen.rateLimit.transactionsPerSecond),
      burst: nonNegativeInt.prefault(D.listen.rateLimit.burst),
      maxWait: duration().prefault(D.listen.rateLimit.maxWait),
    })
    .prefault({}),
  tls: listenTls.prefault({}),
});

const clientUser = z.strictObject({ name: text, password: userPassword });

function checkClientAuth(auth: { method: string; users: { name: string; password: string }[] }, ctx: RefineContext): void {
  if (auth.method !== 'trust' && auth.users.length === 0) {
    issue(ctx, ['users'], `method ${auth.method} needs at least one user in clientAuth.users`);
  }
  const seen = new Set<string>();
  auth.users.forEach((user, index) => {
    if (seen.has(user.name)) issue(ctx, ['users', index, 'name'], `duplicate user ${JSON.stringify(user.name)}`);
    seen.add(user.name);
    const kind = classifyPassword(user.password);
    if (auth.method === 'md5' && kind === 'scram-sha-256') {
      issue(ctx, ['users', index, 'password'], 'a SCRAM verifier cannot answer md5 authentication: use a plaintext password or an md5 hash');
    }
    if (auth.method === 'scram-sha-256' && kind === 'md5') {
      issue(ctx, ['users', index, 'password'], 'an md5 hash cannot answer SCRAM authentication: use a plaintext password or a SCRAM verifier');
    }
  });
}

const clientAuth = z
  .strictObject({
    method: oneOf(CLIENT_AUTH_METHODS).prefault(D.clientAuth.method),
    users: z.array(clientUser).prefault(() => [...D.clientAuth.users]),
  })
  .superRefine(checkClientAuth);

// ---- upstream ---------------------------------------------------------------------------------

const hostEntry = z.strictObject({
  host: hostname,
  port: port.prefault(D.upstream.eachHost.port),
  role: oneOf(HOST_ROLES).prefault(D.upstream.eachHost.role),
  weight: nonNegativeInt.prefault(D.upstream.eachHost.weight),
});

function checkHosts(hosts: { host: string; port: number; weight: number }[], ctx: RefineContext): void {
  if (hosts.length === 0) {
    issue(ctx, [], 'at least one upstream host is required: set upstream.hosts in the config file or UPSTREAM_HOST');
    return;
  }
  const seen = new Set<string>();
  hosts.forEach((entry, index) => {
    const id = `${entry.host}:${entry.port}`;
    if (seen.has(id)) issue(ctx, [index], `duplicate host ${id}`);
    seen.add(id);
  });
  if (hosts.every((entry) => entry.weight === 0)) issue(ctx, [], 'at least one host needs a weight above 0');
}

const CRED = D.upstream.credentials;
const credentials = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('password'), password: secretText }),
  z.strictObject({ type: z.literal('env'), variable: envVariableName.prefault(CRED.env.variable) }),
  z.strictObject({ type: z.literal('file'), path: text }),
  z.strictObject({ type: z.literal('exec'), command, timeout: duration(1).prefault(CRED.exec.timeout) }),
  z.strictObject({
    type: z.literal('aws-rds-iam'),
    region: optional(text),
    host: optional(hostname),
    port: optional(port),
    user: optional(text),
    refreshMargin: duration().prefault(CRED['aws-rds-iam'].refreshMargin),
  }),
  z.strictObject({
    type: z.literal('gcp-cloudsql-iam'),
    refreshMargin: duration().prefault(CRED['gcp-cloudsql-iam'].refreshMargin),
  }),
  z.strictObject({
    type: z.literal('azure-ad'),
    clientId: optional(text),
    tenantId: optional(text),
    scope: text.prefault(CRED['azure-ad'].scope),
    refreshMargin: duration().prefault(CRED['azure-ad'].refreshMargin),
  }),
]);

export const CREDENTIAL_TYPES = ['password', 'env', 'file', 'exec', 'aws-rds-iam', 'gcp-cloudsql-iam', 'azure-ad'] as const;

const upstreamTls = z
  .strictObject({
    mode: oneOf(UPSTREAM_TLS_MODES).prefault(D.upstream.tls.mode),
    ca: optional(text),
    cert: optional(text),
    key: optional(text),
    serverName: optional(hostname),
    minVersion: oneOf(TLS_VERSIONS).prefault(D.upstream.tls.minVersion),
  })
  .superRefine((tls, ctx) => {
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      issue(ctx, [tls.cert === undefined ? 'cert' : 'key'], 'upstream.tls.cert and upstream.tls.key must be set together');
    }
  });

const retry = z
  .strictObject({
    max: nonNegativeInt.prefault(D.upstream.retry.max),
    initialDelay: duration().prefault(D.upstream.retry.initialDelay),
    maxDelay: duration().prefault(D.upstream.retry.maxDelay),
  })
  .superRefine((value, ctx) => {
    if (value.initialDelay > value.maxDelay) issue(ctx, ['initialDelay'], `must not exceed retry.maxDelay (${value.maxDelay}ms)`);
  });

/** Providers whose secret is a short-lived token sent as the password. */
export const TOKEN_CREDENTIAL_TYPES: ReadonlySet<string> = new Set(['aws-rds-iam', 'gcp-cloudsql-iam', 'azure-ad']);

const upstream = z
  .strictObject({
    hosts: z.array(hostEntry).prefault(() => []).superRefine(checkHosts),
    database: optional(text),
    user: optional(text),
    credentials: credentials.optional(),
    tls: upstreamTls.prefault({}),
    connectTimeout: duration(1).prefault(D.upstream.connectTimeout),
    retry: retry.prefault({}),
  })
  .superRefine((value, ctx) => {
    // A token is a bearer credential: sent in clear (or to a server TLS may silently skip), anyone
    // on the path can replay it for its lifetime.
    const type = value.credentials?.type;
    if (type !== undefined && TOKEN_CREDENTIAL_TYPES.has(type) && (value.tls.mode === 'disable' || value.tls.mode === 'prefer')) {
      issue(ctx, ['credentials', 'type'], `${type} sends an IAM token as the password: set upstream.tls.mode to require, verify-ca or verify-full (it is ${value.tls.mode})`);
    }
  });

// ---- pool, routing, health, shutdown, admin, logging --------------------------------------------

const pool = z
  .strictObject({
    mode: oneOf(POOL_MODES).prefault(D.pool.mode),
    size: positiveInt.prefault(D.pool.size),
    minIdle: nonNegativeInt.prefault(D.pool.minIdle),
    idleTimeout: duration().prefault(D.pool.idleTimeout),
    maxLifetime: duration().prefault(D.pool.maxLifetime),
    acquireTimeout: duration(1).prefault(D.pool.acquireTimeout),
    cacheUnnamedStatements: bool.prefault(D.pool.cacheUnnamedStatements),
  })
  .superRefine((value, ctx) => {
    if (value.minIdle > value.size) issue(ctx, ['minIdle'], `must not exceed pool.size (${value.size})`);
  });

const functionName = scalar<string>('expected a function name (name or schema.name)', (value) =>
  typeof value === 'string' && /^[^\s.]+(\.[^\s.]+)?$/.test(value) ? value : undefined,
);

const routingFunctions = z.strictObject({
  allow: z.array(functionName).prefault(() => [...D.routing.functions.allow]),
  deny: z.array(functionName).prefault(() => [...D.routing.functions.deny]),
  refreshInterval: duration(1).prefault(D.routing.functions.refreshInterval),
});

const routing = z.strictObject({
  readWriteSplit: bool.prefault(D.routing.readWriteSplit),
  loadBalance: oneOf(LOAD_BALANCE_POLICIES).prefault(D.routing.loadBalance),
  readYourWrites: oneOf(READ_YOUR_WRITES_MODES).prefault(D.routing.readYourWrites),
  maxReplicaLag: replicaLag.prefault(D.routing.maxReplicaLag),
  readsFromPrimary: oneOf(READS_FROM_PRIMARY).prefault(D.routing.readsFromPrimary),
  functions: routingFunctions.prefault({}),
});

const health = z.strictObject({
  interval: duration(1).prefault(D.health.interval),
  timeout: duration(1).prefault(D.health.timeout),
  failureThreshold: positiveInt.prefault(D.health.failureThreshold),
  circuitBreaker: z
    .strictObject({
      threshold: positiveInt.prefault(D.health.circuitBreaker.threshold),
      cooldown: duration().prefault(D.health.circuitBreaker.cooldown),
    })
    .prefault({}),
  failoverTimeout: duration().prefault(D.health.failoverTimeout),
});

const shutdown = z
  .strictObject({
    timeout: duration().prefault(D.shutdown.timeout),
    acceptGrace: duration().prefault(D.shutdown.acceptGrace),
  })
  .superRefine((value, ctx) => {
    if (value.acceptGrace > value.timeout) issue(ctx, ['acceptGrace'], `must not exceed shutdown.timeout (${value.timeout}ms)`);
  });

const admin = z.strictObject({
  host: hostname.prefault(D.admin.host),
  port: listenPort.prefault(D.admin.port),
  token: optional(secretText),
  users: z.array(text).prefault(() => [...D.admin.users]),
});

const logging = z.strictObject({
  level: oneOf(LOG_LEVELS).prefault(D.logging.level),
  format: oneOf(LOG_FORMATS).prefault(D.logging.format),
  queries: oneOf(QUERY_LOGGING).prefault(D.logging.queries),
  slowQueryThreshold: duration().prefault(D.logging.slowQueryThreshold),
  connections: bool.prefault(D.logging.connections),
});

export const ConfigSchema = z
  .strictObject({
    listen: listen.prefault({}),
    clientAuth: clientAuth.prefault({}),
    upstream: upstream.prefault({}),
    pool: pool.prefault({}),
    routing: routing.prefault({}),
    health: health.prefault({}),
    shutdown: shutdown.prefault({}),
    admin: admin.prefault({}),
    logging: logging.prefault({}),
  })
  .superRefine((config, ctx) => {
    const { listen: front, admin: back } = config;
    if (back.port !== 0 && back.port === front.port && back.host === front.host) {
      issue(ctx, ['admin', 'port'], `must differ from listen.port (${front.port}) on the same host`);
    }
  });

/** What a config file, the environment or flags may contain (before defaults and parsing). */
export type ConfigInput = z.input<typeof ConfigSchema>;

type DeepReadonly<T> = T extends (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The effective config: fully defaulted, deep-frozen; durations in ms, sizes in bytes. */
export type Config = DeepReadonly<z.output<typeof ConfigSchema>>;

export type DeepPartial<T> = T extends readonly (infer E)[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

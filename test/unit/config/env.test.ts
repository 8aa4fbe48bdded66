// Environment-only configuration (sidecars) and the precedence of the layers:
// defaults < environment < file < flags (DESIGN.md), pinned here.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { loadConfig, parseConfigText } from '../../../src/config/index.ts';

function fromEnv(env: Record<string, string>) {
  return loadConfig({ env });
}

function envError(env: Record<string, string>): string {
  try {
    fromEnv(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  assert.fail('expected the environment to be rejected');
}

test('UPSTREAM_HOST: a comma-separated list with ports, IPv6 in brackets, UPSTREAM_PORT as default', () => {
  const config = fromEnv({ UPSTREAM_HOST: 'primary.db, replica.db:5433,[::1]:6543,[fe80::1],2001:db8::7', UPSTREAM_PORT: '6000' });
  assert.deepEqual(config.upstream.hosts, [
    { host: 'primary.db', port: 6000, role: 'auto', weight: 1 },
    { host: 'replica.db', port: 5433, role: 'auto', weight: 1 },
    { host: '::1', port: 6543, role: 'auto', weight: 1 },
    { host: 'fe80::1', port: 6000, role: 'auto', weight: 1 },
    { host: '2001:db8::7', port: 6000, role: 'auto', weight: 1 },
  ]);
  assert.deepEqual(
    fromEnv({ UPSTREAM_HOST: 'a,b:5433,' }).upstream.hosts.map((host) => host.port),
    [5432, 5433],
  );
});

test('the other variables set their keys', () => {
  const config = fromEnv({
    UPSTREAM_HOST: 'db',
    UPSTREAM_USER: 'app',
    UPSTREAM_PASSWORD: 'pw-from-env',
    UPSTREAM_DATABASE: 'appdb',
    LISTEN_PORT: '6432',
    LISTEN_HOST: '0.0.0.0',
    RETRY_MAX: '0',
    CIRCUIT_BREAKER_THRESHOLD: '9',
    POOL_MODE: 'transaction',
    POOL_SIZE: '50',
    LOG_LEVEL: 'DEBUG',
    ADMIN_PORT: '0',
  });
  assert.equal(config.upstream.user, 'app');
  assert.deepEqual(config.upstream.credentials, { type: 'password', password: 'pw-from-env' });
  assert.equal(config.upstream.database, 'appdb');
  assert.equal(config.listen.port, 6432);
  assert.equal(config.listen.host, '0.0.0.0');
  assert.equal(config.upstream.retry.max, 0);
  assert.equal(config.health.circuitBreaker.threshold, 9);
  assert.equal(config.pool.mode, 'transaction');
  assert.equal(config.pool.size, 50);
  assert.equal(config.logging.level, 'debug');
  assert.equal(config.admin.port, 0);
});

test('TLS_ENABLED maps to require/disable; TLS_MODE wins over it', () => {
  assert.equal(fromEnv({ UPSTREAM_HOST: 'db', TLS_ENABLED: 'true' }).upstream.tls.mode, 'require');
  assert.equal(fromEnv({ UPSTREAM_HOST: 'db', TLS_ENABLED: '1' }).upstream.tls.mode, 'require');
  assert.equal(fromEnv({ UPSTREAM_HOST: 'db', TLS_ENABLED: 'false' }).upstream.tls.mode, 'disable');
  assert.equal(fromEnv({ UPSTREAM_HOST: 'db', TLS_ENABLED: 'true', TLS_MODE: 'verify-full' }).upstream.tls.mode, 'verify-full');
  assert.equal(fromEnv({ UPSTREAM_HOST: 'db', TLS_MODE: 'verify-ca' }).upstream.tls.mode, 'verify-ca');
  assert.equal(fromEnv({ UPSTREAM_HOST: 'db' }).upstream.tls.mode, 'prefer');
});

test('POOL_MODE is checked against the allowed modes', () => {
  assert.equal(fromEnv({ UPSTREAM_HOST: 'db', POOL_MODE: 'session' }).pool.mode, 'session');
  assert.equal(envError({ UPSTREAM_HOST: 'db', POOL_MODE: 'statement' }), 'environment POOL_MODE: expected session | transaction, got "statement"');
});

test('an invalid value is an error naming the variable', () => {
  assert.equal(envError({ UPSTREAM_HOST: 'db', UPSTREAM_PORT: 'abc' }), 'environment UPSTREAM_PORT: expected an integer 1-65535, got "abc"');
  assert.match(envError({ UPSTREAM_HOST: 'db:99999' }), /^environment UPSTREAM_HOST: expected a comma-separated list of host\[:port\].*got "db:99999"$/);
  assert.match(envError({ UPSTREAM_HOST: '[::1' }), /^environment UPSTREAM_HOST:/);
  assert.match(envError({ UPSTREAM_HOST: ',' }), /^environment UPSTREAM_HOST:/);
  assert.equal(envError({ UPSTREAM_HOST: 'db', LISTEN_PORT: '-1' }), 'environment LISTEN_PORT: expected an integer 0-65535, got "-1"');
  assert.equal(envError({ UPSTREAM_HOST: 'db', POOL_SIZE: '0' }), 'environment POOL_SIZE: expected a positive integer, got "0"');
  assert.equal(envError({ UPSTREAM_HOST: 'db', TLS_ENABLED: 'maybe' }), 'environment TLS_ENABLED: expected true or false, got "maybe"');
  assert.match(envError({ UPSTREAM_HOST: 'db', TLS_MODE: 'on' }), /^environment TLS_MODE: expected disable \| prefer/);
  assert.match(envError({ UPSTREAM_HOST: 'db', LOG_LEVEL: 'loud' }), /^environment LOG_LEVEL:/);
  assert.match(envError({ UPSTREAM_HOST: 'db', RETRY_MAX: 'x' }), /^environment RETRY_MAX:/);
  assert.match(envError({ UPSTREAM_HOST: 'db', CIRCUIT_BREAKER_THRESHOLD: '0' }), /^environment CIRCUIT_BREAKER_THRESHOLD:/);
  assert.match(envError({ UPSTREAM_HOST: 'db', ADMIN_PORT: '65536' }), /^environment ADMIN_PORT:/);
});

test('empty variables count as unset; UPSTREAM_PORT alone is ignored', () => {
  const config = loadConfig({ env: { UPSTREAM_HOST: 'db', POOL_SIZE: '', UPSTREAM_PASSWORD: '' } });
  assert.equal(config.pool.size, 20);
  assert.equal(config.upstream.credentials, undefined);
  const withFile = parseConfigText('upstream:\n  hosts: [{ host: a }]\n', { env: { UPSTREAM_PORT: '7777' } });
  assert.equal(withFile.upstream.hosts[0]?.port, 5432);
});

test('a schema error in an environment-set value names the variable', () => {
  const err = envError({ UPSTREAM_HOST: 'db,db' });
  assert.match(err, /upstream\.hosts\[1\]: duplicate host db:5432 \(from environment UPSTREAM_HOST\)/);
});

test('precedence: defaults < environment < file < flags', () => {
  const env = { UPSTREAM_HOST: 'env-host', POOL_SIZE: '30', LOG_LEVEL: 'warn', LISTEN_PORT: '7000', RETRY_MAX: '7' };
  const file = 'upstream:\n  hosts: [{ host: file-host }]\npool:\n  size: 40\nlisten:\n  port: 8000\n';
  const flags = { pool: { size: 50 } };

  // defaults only where nobody sets a key
  const config = parseConfigText(file, { env, flags });
  assert.equal(config.pool.mode, 'session');
  // environment over defaults
  assert.equal(config.logging.level, 'warn');
  assert.equal(config.upstream.retry.max, 7);
  // file over environment
  assert.equal(config.listen.port, 8000);
  assert.deepEqual(config.upstream.hosts.map((host) => host.host), ['file-host']);
  // flags over file and environment
  assert.equal(config.pool.size, 50);
  assert.equal(parseConfigText(file, { env, flags: { logging: { level: 'error' } } }).logging.level, 'error');
  // environment fills what the file leaves out, key by key inside a section
  assert.equal(parseConfigText(file, { env }).pool.size, 40);
  assert.equal(parseConfigText('pool:\n  mode: transaction\n', { env }).pool.size, 30);
});

test('precedence: a file credential of another type replaces UPSTREAM_PASSWORD whole', () => {
  const env = { UPSTREAM_HOST: 'db', UPSTREAM_PASSWORD: 'from-env' };
  const config = parseConfigText('upstream:\n  credentials: { type: file, path: /run/pw }\n', { env });
  assert.deepEqual(config.upstream.credentials, { type: 'file', path: '/run/pw' });
  const flagged = parseConfigText('', { env, flags: { upstream: { credentials: { type: 'env', variable: 'PGPASSWORD' } } } });
  assert.deepEqual(flagged.upstream.credentials, { type: 'env', variable: 'PGPASSWORD' });
});

test('container variables: admin address and token, log format, upstream CA file', () => {
  const config = fromEnv({
    UPSTREAM_HOST: 'db',
    ADMIN_HOST: '0.0.0.0',
    ADMIN_TOKEN: 'tok-from-env',
    LOG_FORMAT: 'Pretty',
    TLS_CA_FILE: '/etc/ssl/rds-ca.pem',
    TLS_MODE: 'verify-full',
  });
  assert.equal(config.admin.host, '0.0.0.0');
  assert.equal(config.admin.token, 'tok-from-env');
  assert.equal(config.logging.format, 'pretty');
  assert.equal(config.upstream.tls.ca, '/etc/ssl/rds-ca.pem');
  assert.match(envError({ UPSTREAM_HOST: 'db', LOG_FORMAT: 'xml' }), /^environment LOG_FORMAT: expected json \| pretty, got "xml"$/);
});

test('UPSTREAM_PASSWORD_FILE and UPSTREAM_CREDENTIALS choose the credential provider; only one may be set', () => {
  assert.deepEqual(fromEnv({ UPSTREAM_HOST: 'db', UPSTREAM_PASSWORD_FILE: '/run/secrets/pw' }).upstream.credentials, { type: 'file', path: '/run/secrets/pw' });
  const iam = fromEnv({ UPSTREAM_HOST: 'db.abc.eu-west-1.rds.amazonaws.com', UPSTREAM_CREDENTIALS: 'aws-rds-iam', TLS_MODE: 'require' });
  assert.equal(iam.upstream.credentials?.type, 'aws-rds-iam');
  assert.equal(fromEnv({ UPSTREAM_HOST: 'db', UPSTREAM_CREDENTIALS: 'GCP-CloudSQL-IAM', TLS_MODE: 'require' }).upstream.credentials?.type, 'gcp-cloudsql-iam');
  assert.equal(fromEnv({ UPSTREAM_HOST: 'db', UPSTREAM_CREDENTIALS: 'azure-ad', TLS_MODE: 'verify-full' }).upstream.credentials?.type, 'azure-ad');
  assert.match(envError({ UPSTREAM_HOST: 'db', UPSTREAM_CREDENTIALS: 'kerberos' }), /^environment UPSTREAM_CREDENTIALS: expected aws-rds-iam \| gcp-cloudsql-iam \| azure-ad, got "kerberos"$/);
  const both = envError({ UPSTREAM_HOST: 'db', UPSTREAM_PASSWORD: 'hunter2', UPSTREAM_PASSWORD_FILE: '/run/pw' });
  assert.match(both, /^environment UPSTREAM_PASSWORD and UPSTREAM_PASSWORD_FILE: set only one of/);
  assert.ok(!both.includes('hunter2'), 'the password is not repeated in the error');
  // the schema's rule that IAM tokens travel over TLS names the variable that chose the provider
  assert.match(envError({ UPSTREAM_HOST: 'db', UPSTREAM_CREDENTIALS: 'aws-rds-iam', TLS_MODE: 'disable' }), /UPSTREAM_CREDENTIALS/);
});

// Loading and validation: defaults, strict keys with file:line and key path, enums, YAML syntax
// errors, coercion, clientAuth rules, credential variants and cross-field checks.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { loadConfig, parseConfigText, type Config } from '../../../src/config/index.ts';

const HOSTS = 'upstream:\n  hosts: [{ host: db.internal }]\n';

function parse(text: string, env: Record<string, string> = {}): Config {
  return parseConfigText(text, { file: 'ambassador.yaml', env });
}

function configError(text: string, env: Record<string, string> = {}): ConfigError {
  try {
    parse(text, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the config to be rejected');
}

test('a minimal file gets every documented default', () => {
  const config = parse(HOSTS);
  assert.deepEqual(config.listen, {
    host: '127.0.0.1',
    port: 5432,
    maxClientConnections: 1000,
    loginTimeout: 10_000,
    maxMessageSize: 1_073_741_824,
    maxStartupPacketSize: 10_000,
    maxStartupParameters: 64,
    maxClientConnectionsPerUser: 0,
    clientIdleTimeout: 0,
    idleInTransactionTimeout: 0,
    maxClientBuffer: 1_048_576,
    maxConcurrentCancels: 64,
    rateLimit: { transactionsPerSecond: 0, burst: 0, maxWait: 1_000 },
    tls: { minVersion: 'TLSv1.2', required: false },
  });
  assert.deepEqual(config.clientAuth, { method: 'trust', users: [] });
  assert.deepEqual(config.upstream.hosts, [{ host: 'db.internal', port: 5432, role: 'auto', weight: 1 }]);
  assert.equal(config.upstream.credentials, undefined);
  assert.equal(config.upstream.database, undefined);
  assert.equal(config.upstream.user, undefined);
  assert.equal(config.upstream.tls.mode, 'prefer');
  assert.equal(config.upstream.tls.minVersion, 'TLSv1.2');
  assert.equal(config.upstream.connectTimeout, 5000);
  assert.deepEqual(config.upstream.retry, { max: 3, initialDelay: 100, maxDelay: 5000 });
  assert.deepEqual(config.pool, {
    mode: 'session',
    size: 20,
    minIdle: 0,
    idleTimeout: 600_000,
    maxLifetime: 3_600_000,
    acquireTimeout: 5000,
    cacheUnnamedStatements: false,
  });
  assert.deepEqual(config.routing, {
    readWriteSplit: false,
    loadBalance: 'round-robin',
    readYourWrites: 'off',
    maxReplicaLag: { ms: 10_000 },
    readsFromPrimary: 'fallback',
    functions: { allow: [], deny: [], refreshInterval: 300_000 },
  });
  assert.deepEqual(config.health, {
    interval: 1000,
    timeout: 1000,
    failureThreshold: 3,
    circuitBreaker: { threshold: 5, cooldown: 10_000 },
    failoverTimeout: 30_000,
  });
  assert.deepEqual(config.shutdown, { timeout: 30_000, acceptGrace: 0 });
  assert.deepEqual(config.admin, { host: '127.0.0.1', port: 9187, users: [] });
  assert.deepEqual(config.logging, { level: 'info', format: 'json', queries: 'off', slowQueryThreshold: 1000, connections: true });
});

test('the result is deep-frozen', () => {
  const config = parse(HOSTS);
  assert.ok(Object.isFrozen(config));
  assert.ok(Object.isFrozen(config.upstream.hosts));
  assert.ok(Object.isFrozen(config.upstream.hosts[0]));
  assert.ok(Object.isFrozen(config.routing.maxReplicaLag));
  assert.throws(() => {
    (config.pool as { size: number }).size = 1;
  }, TypeError);
});

test('durations and sizes in the file are normalised to ms and bytes', () => {
  const config = parse(`${HOSTS}pool:
  idleTimeout: 250ms
  maxLifetime: 2h
  acquireTimeout: 1500
listen:
  maxMessageSize: 64MB
  maxStartupPacketSize: 16KiB
routing:
  maxReplicaLag: 16MB
`);
  assert.equal(config.pool.idleTimeout, 250);
  assert.equal(config.pool.maxLifetime, 7_200_000);
  assert.equal(config.pool.acquireTimeout, 1500);
  assert.equal(config.listen.maxMessageSize, 64_000_000);
  assert.equal(config.listen.maxStartupPacketSize, 16_384);
  assert.deepEqual(config.routing.maxReplicaLag, { bytes: 16_000_000 });
});

test('a bad duration names the line, the key path and the value', () => {
  const err = configError(`${HOSTS}health:\n  interval: soon\n`);
  assert.equal(err.line, 4);
  assert.equal(err.keyPath, 'health.interval');
  assert.match(err.message, /^ambassador\.yaml:4: health\.interval: expected a non-zero duration like 250ms, 5s, 10m, 1h or a number of milliseconds, got "soon"/);
});

test('pool.size "lots" is reported as in the docs', () => {
  const err = configError(`${HOSTS}pool:\n  mode: session\n  size: lots\n`);
  assert.equal(err.message, 'ambassador.yaml:5: pool.size: expected a positive integer, got "lots"');
  assert.equal(err.file, 'ambassador.yaml');
});

test('an unknown key at the top level names its line and key', () => {
  const err = configError(`${HOSTS}\npools:\n  size: 3\n`);
  assert.equal(err.line, 4);
  assert.equal(err.keyPath, 'pools');
  assert.equal(err.message, 'ambassador.yaml:4: pools: unknown key');
});

test('unknown keys are rejected at every level, with the right line', () => {
  const nested = configError(`${HOSTS}health:\n  circuitBreaker:\n    threshold: 3\n    cooldwn: 5s\n`);
  assert.equal(nested.line, 6);
  assert.equal(nested.keyPath, 'health.circuitBreaker.cooldwn');

  const inList = configError('upstream:\n  hosts:\n    - host: a\n    - host: b\n      prot: 5433\n');
  assert.equal(inList.line, 5);
  assert.equal(inList.keyPath, 'upstream.hosts[1].prot');

  const inCredentials = configError(`${HOSTS}  credentials:\n    type: file\n    path: /run/pw\n    mode: 0600\n`);
  assert.equal(inCredentials.line, 6);
  assert.equal(inCredentials.keyPath, 'upstream.credentials.mode');
});

test('several problems: the first by line leads, the others follow', () => {
  const err = configError(`bogus: 1\n${HOSTS}pool:\n  size: 0\n`);
  assert.equal(err.line, 1);
  assert.equal(err.keyPath, 'bogus');
  assert.match(err.message, /\n {2}also ambassador\.yaml:5: pool\.size: expected a positive integer, got 0/);
});

test('a bad enum value lists the allowed values', () => {
  const err = configError(`${HOSTS}pool:\n  mode: statement\n`);
  assert.equal(err.message, 'ambassador.yaml:4: pool.mode: expected one of session | transaction, got "statement"');
  const role = configError('upstream:\n  hosts:\n    - { host: a, role: leader }\n');
  assert.equal(role.keyPath, 'upstream.hosts[0].role');
  assert.equal(role.line, 3);
});

test('a section of the wrong type is named', () => {
  const err = configError(`${HOSTS}pool: 5\n`);
  assert.equal(err.keyPath, 'pool');
  assert.equal(err.line, 3);
  assert.match(err.message, /expected a mapping, got 5/);
});

test('YAML syntax errors name the line', () => {
  const err = configError('listen:\n  port: 6432\nupstream:\n  hosts: [ { host: a }\npool:\n  size: 3\n');
  assert.match(err.message, /^ambassador\.yaml:\d+: YAML syntax error/);
  assert.ok(err.line !== undefined && err.line >= 4 && err.line <= 5, `line ${err.line}`);

  const duplicate = configError('pool:\n  size: 1\n  size: 2\n');
  assert.equal(duplicate.line, 3);
  assert.match(duplicate.message, /YAML syntax error.*unique/);

  const tab = configError('listen:\n\tport: 1\n');
  assert.equal(tab.line, 2);
});

test('a file that is not a mapping is rejected; an empty one is all defaults plus hosts', () => {
  assert.match(configError('- a\n- b\n').message, /expected a mapping of sections/);
  const empty = parseConfigText('', { env: { UPSTREAM_HOST: 'db' } });
  assert.equal(empty.pool.size, 20);
  const nulls = parse(`${HOSTS}listen:\npool:\n`);
  assert.equal(nulls.listen.port, 5432);
});

test('upstream.hosts is required, with at least one entry', () => {
  const missing = configError('pool:\n  size: 5\n');
  assert.equal(missing.keyPath, 'upstream.hosts');
  assert.match(missing.message, /at least one upstream host is required/);
  const empty = configError('upstream:\n  hosts: []\n');
  assert.equal(empty.line, 2);
  const noHost = configError('upstream:\n  hosts:\n    - port: 5433\n');
  assert.equal(noHost.keyPath, 'upstream.hosts[0].host');
  assert.match(noHost.message, /required, but not set/);
  assert.match(configError('upstream:\n  hosts: [{ host: a }, { host: a, port: 5432 }]\n').message, /duplicate host a:5432/);
});

test('ports: 1-65535 upstream, 0 allowed (OS-chosen) for listen and admin', () => {
  const config = parse(`${HOSTS}listen:\n  port: 0\nadmin:\n  port: 0\n`);
  assert.equal(config.listen.port, 0);
  assert.equal(config.admin.port, 0);
  assert.match(configError('upstream:\n  hosts: [{ host: a, port: 0 }]\n').message, /expected an integer 1-65535, got 0/);
  assert.match(configError(`${HOSTS}listen:\n  port: 70000\n`).message, /listen\.port: expected an integer 0-65535/);
  assert.match(configError(`${HOSTS}listen:\n  port: 6432\nadmin:\n  port: 6432\n`).message, /admin\.port: must differ from listen\.port/);
});

test('numeric and boolean strings are coerced where the schema wants them', () => {
  const config = parse(`${HOSTS}pool:\n  size: "7"\nrouting:\n  readWriteSplit: "true"\nlisten:\n  tls:\n    required: "false"\n`);
  assert.equal(config.pool.size, 7);
  assert.equal(config.routing.readWriteSplit, true);
  assert.equal(config.listen.tls.required, false);
  assert.match(configError(`${HOSTS}routing:\n  readWriteSplit: yes\n`).message, /expected true or false, got "yes"/);
  assert.match(configError(`${HOSTS}pool:\n  size: 2.5\n`).message, /pool\.size: expected a positive integer, got 2\.5/);
});

test('clientAuth scram-sha-256 or md5 without users is rejected', () => {
  for (const method of ['scram-sha-256', 'md5']) {
    const err = configError(`${HOSTS}clientAuth:\n  method: ${method}\n`);
    assert.equal(err.keyPath, 'clientAuth.users');
    assert.equal(err.line, 3);
    assert.match(err.message, new RegExp(`method ${method} needs at least one user`));
  }
  assert.equal(parse(`${HOSTS}clientAuth:\n  method: trust\n`).clientAuth.users.length, 0);
});

test('clientAuth users: plaintext, md5 hash or SCRAM verifier, matched to the method', () => {
  const key = Buffer.alloc(32, 1).toString('base64');
  const verifier = `SCRAM-SHA-256$4096:c2FsdHNhbHQ=$${key}:${key}`;
  const md5 = `md5${'0123456789abcdef'.repeat(2)}`;
  const scram = parse(`${HOSTS}clientAuth:\n  method: scram-sha-256\n  users:\n    - { name: a, password: "plain" }\n    - { name: b, password: "${verifier}" }\n`);
  assert.equal(scram.clientAuth.users[1]?.password, verifier);
  const md5Config = parse(`${HOSTS}clientAuth:\n  method: md5\n  users:\n    - { name: a, password: ${md5} }\n`);
  assert.equal(md5Config.clientAuth.users[0]?.password, md5);

  const wrongKind = configError(`${HOSTS}clientAuth:\n  method: scram-sha-256\n  users:\n    - name: a\n      password: ${md5}\n`);
  assert.equal(wrongKind.keyPath, 'clientAuth.users[0].password');
  assert.match(wrongKind.message, /md5 hash cannot answer SCRAM/);
  assert.match(configError(`${HOSTS}clientAuth:\n  method: md5\n  users:\n    - { name: a, password: "${verifier}" }\n`).message, /SCRAM verifier cannot answer md5/);

  const malformed = configError(`${HOSTS}clientAuth:\n  method: scram-sha-256\n  users:\n    - name: a\n      password: "SCRAM-SHA-256$4096:c2FsdA==$topsecretvalue"\n`);
  assert.equal(malformed.line, 7);
  assert.match(malformed.message, /SCRAM-SHA-256\$<iterations>/);
  assert.doesNotMatch(malformed.message, /topsecretvalue/);
  assert.match(configError(`${HOSTS}clientAuth:\n  method: md5\n  users: [{ name: a, password: p }, { name: a, password: q }]\n`).message, /duplicate user "a"/);
});

test('secrets are never echoed in error messages', () => {
  const err = configError(`${HOSTS}  credentials:\n    type: password\n    password: 31337\n`);
  assert.equal(err.keyPath, 'upstream.credentials.password');
  assert.doesNotMatch(err.message, /31337/);
  const token = configError(`${HOSTS}admin:\n  token: 424242\n`);
  assert.doesNotMatch(token.message, /424242/);
});

test('credential variants: each type with its own keys and defaults', () => {
  const credentials = (body: string) => parse(`${HOSTS}  credentials:\n${body}`).upstream.credentials;
  assert.deepEqual(credentials('    type: password\n    password: s3cret\n'), { type: 'password', password: 's3cret' });
  assert.deepEqual(credentials('    type: env\n'), { type: 'env', variable: 'UPSTREAM_PASSWORD' });
  assert.deepEqual(credentials('    type: env\n    variable: PGPASSWORD\n'), { type: 'env', variable: 'PGPASSWORD' });
  assert.deepEqual(credentials('    type: file\n    path: /run/secrets/pg\n'), { type: 'file', path: '/run/secrets/pg' });
  assert.deepEqual(credentials('    type: exec\n    command: vault read -field=password db\n'), {
    type: 'exec',
    command: 'vault read -field=password db',
    timeout: 5000,
  });
  assert.deepEqual(credentials('    type: exec\n    command: [cat, /pw]\n    timeout: 2s\n'), {
    type: 'exec',
    command: ['cat', '/pw'],
    timeout: 2000,
  });
  const overTls = '  tls:\n    mode: verify-full\n';
  assert.deepEqual(credentials(`    type: aws-rds-iam\n    region: eu-west-1\n    port: "5433"\n${overTls}`), {
    type: 'aws-rds-iam',
    region: 'eu-west-1',
    port: 5433,
    refreshMargin: 300_000,
  });
  assert.deepEqual(credentials(`    type: gcp-cloudsql-iam\n    refreshMargin: 1m\n${overTls}`), { type: 'gcp-cloudsql-iam', refreshMargin: 60_000 });
  assert.deepEqual(credentials(`    type: azure-ad\n    clientId: abc\n${overTls}`), {
    type: 'azure-ad',
    clientId: 'abc',
    scope: 'https://ossrdbms-aad.database.windows.net/.default',
    refreshMargin: 240_000,
  });
});

test('token credentials refuse an upstream that may go unencrypted, naming the type line', () => {
  for (const mode of ['disable', 'prefer']) {
    const err = configError(`${HOSTS}  credentials:\n    type: gcp-cloudsql-iam\n  tls:\n    mode: ${mode}\n`);
    assert.equal(err.keyPath, 'upstream.credentials.type');
    assert.equal(err.line, 4);
    assert.match(err.message, new RegExp(`sends an IAM token as the password: set upstream.tls.mode to require, verify-ca or verify-full \\(it is ${mode}\\)`));
  }
  assert.match(configError(`${HOSTS}  credentials:\n    type: azure-ad\n`).message, /azure-ad sends an IAM token.*\(it is prefer\)/);
  assert.equal(parse(`${HOSTS}  credentials:\n    type: aws-rds-iam\n  tls:\n    mode: require\n`).upstream.tls.mode, 'require');
});

test('credential variants reject the wrong keys, a missing or unknown type', () => {
  const wrongKey = configError(`${HOSTS}  credentials:\n    type: env\n    path: /x\n`);
  assert.equal(wrongKey.keyPath, 'upstream.credentials.path');
  assert.equal(wrongKey.line, 5);
  const unknownType = configError(`${HOSTS}  credentials:\n    type: vault\n`);
  assert.equal(unknownType.keyPath, 'upstream.credentials.type');
  assert.equal(unknownType.line, 4);
  assert.match(unknownType.message, /expected one of password \| env \| file \| exec \| aws-rds-iam \| gcp-cloudsql-iam \| azure-ad, got "vault"/);
  assert.match(configError(`${HOSTS}  credentials:\n    path: /x\n`).message, /credentials\.type: required, one of password/);
  assert.match(configError(`${HOSTS}  credentials:\n    type: file\n`).message, /credentials\.path: required, but not set/);
  assert.match(configError(`${HOSTS}  credentials:\n    type: exec\n    command: []\n`).message, /credentials\.command: expected a command line/);
});

test('cross-field rules: tls pairs, minIdle, retry delays, shutdown grace', () => {
  assert.match(configError(`${HOSTS}listen:\n  tls:\n    cert: /c.pem\n`).message, /listen\.tls\.key: listen\.tls\.cert and listen\.tls\.key must be set together/);
  assert.match(configError(`${HOSTS}listen:\n  tls:\n    required: true\n`).message, /listen\.tls\.required: TLS cannot be required without/);
  const tls = parse(`${HOSTS}listen:\n  tls: { cert: /c.pem, key: /k.pem, minVersion: TLSv1.3, required: true }\n`).listen.tls;
  assert.deepEqual(tls, { cert: '/c.pem', key: '/k.pem', minVersion: 'TLSv1.3', required: true });
  assert.match(configError(`${HOSTS}listen:\n  tls:\n    minVersion: TLSv1.1\n`).message, /expected one of TLSv1\.2 \| TLSv1\.3/);
  assert.match(configError(`${HOSTS}  tls:\n    key: /k.pem\n`).message, /upstream\.tls\.cert: upstream\.tls\.cert and upstream\.tls\.key/);
  assert.match(configError(`${HOSTS}pool:\n  size: 2\n  minIdle: 3\n`).message, /pool\.minIdle: must not exceed pool\.size/);
  assert.match(configError(`${HOSTS}  retry:\n    initialDelay: 10s\n`).message, /upstream\.retry\.initialDelay: must not exceed/);
  assert.match(configError(`${HOSTS}shutdown:\n  acceptGrace: 1m\n`).message, /shutdown\.acceptGrace: must not exceed/);
  assert.match(configError('upstream:\n  hosts: [{ host: a, weight: 0 }]\n').message, /weight above 0/);
});

test('an optional string set to "" counts as not set', () => {
  const config = parse(`${HOSTS}  database: ""\n  user: app\n`);
  assert.equal(config.upstream.database, undefined);
  assert.equal(config.upstream.user, 'app');
});

test('loadConfig reads the file and names it in errors; a missing file is a ConfigError', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ambassador-config-'));
  try {
    const file = join(dir, 'ambassador.yaml');
    writeFileSync(file, `${HOSTS}pool:\n  size: 9\n`);
    assert.equal(loadConfig({ file, env: {} }).pool.size, 9);
    writeFileSync(file, `${HOSTS}pool:\n  size: nine\n`);
    assert.throws(() => loadConfig({ file, env: {} }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.file, file);
      assert.ok(err.message.startsWith(`${file}:4: pool.size:`));
      return true;
    });
    assert.throws(() => loadConfig({ file: join(dir, 'nope.yaml'), env: {} }), /cannot read config file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loadConfig without a file builds the config from the environment and flags', () => {
  const config = loadConfig({ env: { UPSTREAM_HOST: 'db' }, flags: { pool: { size: 4 } } });
  assert.equal(config.upstream.hosts[0]?.host, 'db');
  assert.equal(config.pool.size, 4);
  assert.match(String(assertThrows(() => loadConfig({ env: {} }))), /upstream\.hosts: at least one upstream host is required/);
});

test('bad flag values are attributed to the flag', () => {
  const err = assertThrows(() => parseConfigText(HOSTS, { env: {}, flags: { pool: { size: 'many' } } }));
  assert.ok(err instanceof ConfigError);
  assert.equal(err.message, 'pool.size: expected a positive integer, got "many" (set by a flag)');
});

function assertThrows(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected an error');
}

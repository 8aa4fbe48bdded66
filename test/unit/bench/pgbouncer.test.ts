// The pgbouncer target's generated files and binary lookup, and the pool sizes every proxy target
// gets (no pgbouncer is run here).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { authFileLine, connstringValue, findExecutable, pgbouncerIni } from '../../../bench/pgbouncer.ts';
import { ambassadorConfig, sessionPoolSize, type TargetContext } from '../../../bench/targets.ts';

const SETTINGS = {
  listenPort: 40123,
  poolMode: 'transaction' as const,
  poolSize: 20,
  maxClientConn: 100,
  authFile: '/tmp/x/userlist.txt',
  logFile: '/tmp/x/pgbouncer.log',
  database: 'app',
  server: { host: '127.0.0.1', port: 40001, user: 'app', password: 'Zx_9-abc' },
};

function iniSettings(ini: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const line of ini.split('\n')) {
    const match = /^([a-z_]+) = ?(.*)$/.exec(line);
    if (match) found.set(match[1]!, match[2]!);
  }
  return found;
}

test('pgbouncer.ini: loopback on the given port, no unix socket, scram clients, pool mode and size, plaintext upstream', () => {
  const ini = pgbouncerIni(SETTINGS);
  assert.match(ini, /^\[databases\]\napp = host=127\.0\.0\.1 port=40001 dbname=app user=app password=Zx_9-abc\n\n\[pgbouncer\]\n/);
  const settings = iniSettings(ini);
  assert.equal(settings.get('listen_addr'), '127.0.0.1');
  assert.equal(settings.get('listen_port'), '40123');
  assert.equal(settings.get('unix_socket_dir'), '');
  assert.equal(settings.get('auth_type'), 'scram-sha-256');
  assert.equal(settings.get('auth_file'), '/tmp/x/userlist.txt');
  assert.equal(settings.get('pool_mode'), 'transaction');
  assert.equal(settings.get('default_pool_size'), '20');
  assert.equal(settings.get('max_client_conn'), '100');
  assert.equal(settings.get('server_tls_sslmode'), 'disable');
  assert.equal(settings.get('logfile'), '/tmp/x/pgbouncer.log');
  assert.equal(settings.get('log_connections'), '0');
  assert.equal(iniSettings(pgbouncerIni({ ...SETTINGS, poolMode: 'session', poolSize: 32 })).get('pool_mode'), 'session');
});

test('connection-string values with spaces or quotes are quoted; auth_file lines double their quotes', () => {
  assert.equal(connstringValue('base64url_-=+/x'), 'base64url_-=+/x');
  assert.equal(connstringValue("it's a pw"), "'it''s a pw'");
  assert.equal(connstringValue('back\\slash'), "'back\\slash'");
  assert.equal(authFileLine('app', 'secret'), '"app" "secret"\n');
  assert.equal(authFileLine('app', 'se"cret'), '"app" "se""cret"\n');
});

test('findExecutable: PATH entries first, then the extra directories (Debian installs to /usr/sbin)', () => {
  const present = new Set(['/usr/sbin/pgbouncer', '/opt/bin/pgbouncer']);
  const isExecutable = (file: string): boolean => present.has(file);
  assert.equal(findExecutable('pgbouncer', '/usr/bin:/bin', ['/usr/sbin'], isExecutable), '/usr/sbin/pgbouncer');
  assert.equal(findExecutable('pgbouncer', '/opt/bin:/usr/bin', ['/usr/sbin'], isExecutable), '/opt/bin/pgbouncer');
  assert.equal(findExecutable('pgbouncer', undefined, ['/usr/local/sbin'], isExecutable), null);
});

test('pool sizes: transaction pooling gets --pool-size, session pooling at least one per client', () => {
  assert.equal(sessionPoolSize({ clients: 32, poolSize: 20 }), 32);
  assert.equal(sessionPoolSize({ clients: 8, poolSize: 20 }), 20);
  const context = {
    clients: 32,
    poolSize: 20,
    cluster: { users: { app: { user: 'app', password: 'upstream-pw' } }, primary: { host: '127.0.0.1', port: 40001 } },
  } as unknown as Omit<TargetContext, 'log'>;
  const config = ambassadorConfig(context, 'client-pw', { pool: { mode: 'transaction', size: 20 } }) as {
    pool: unknown;
    clientAuth: { method: string; users: Array<{ name: string; password: string }> };
    upstream: { credentials: unknown; tls: unknown };
  };
  assert.deepEqual(config.pool, { mode: 'transaction', size: 20 });
  assert.deepEqual(config.clientAuth, { method: 'scram-sha-256', users: [{ name: 'app', password: 'client-pw' }] });
  assert.deepEqual(config.upstream.credentials, { type: 'password', password: 'upstream-pw' });
  assert.deepEqual(config.upstream.tls, { mode: 'disable' });
});

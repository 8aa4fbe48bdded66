// The shared test topology itself: roles of the servers, streaming replication, one login per
// authentication method, and TLS verification against the right and the wrong CA.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';

import { clientConfig, eventually, getTopology, type Login, type PgServerInfo, type Topology } from '../support/topology.ts';

async function withClient<T>(config: pg.ClientConfig, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config);
  client.on('error', () => {});
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

function superuserQuery(topology: Topology, server: PgServerInfo, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  return withClient(clientConfig(topology, server, topology.superuser, { database: 'postgres' }), (client) =>
    client.query(sql, params),
  );
}

test('primary is not in recovery, both replicas are', async () => {
  const topology = await getTopology();
  assert.equal(topology.replicas.length, 2);
  const primary = await superuserQuery(topology, topology.primary, 'SELECT pg_is_in_recovery() AS recovery');
  assert.equal(primary.rows[0].recovery, false);
  for (const replica of topology.replicas) {
    const result = await superuserQuery(topology, replica, 'SELECT pg_is_in_recovery() AS recovery');
    assert.equal(result.rows[0].recovery, true, `${replica.name} should be in recovery`);
  }
});

test('both replicas stream from the primary', async () => {
  const topology = await getTopology();
  const { rows } = await superuserQuery(topology, topology.primary, 'SELECT application_name, state FROM pg_stat_replication');
  for (const replica of topology.replicas) {
    assert.ok(
      rows.some((row) => row.application_name === replica.name && row.state === 'streaming'),
      `${replica.name} not streaming: ${JSON.stringify(rows)}`,
    );
  }
  for (const replica of topology.replicas) {
    const { rows: receiver } = await superuserQuery(topology, replica, 'SELECT status FROM pg_stat_wal_receiver');
    assert.equal(receiver[0]?.status, 'streaming');
  }
});

test('a row inserted on the primary becomes visible on every replica', async () => {
  const topology = await getTopology();
  const table = `cluster_test_${process.pid}_${Date.now()}`;
  const marker = `row-${Math.random().toString(36).slice(2)}`;
  await withClient(clientConfig(topology, topology.primary, topology.users.app), async (client) => {
    await client.query(`CREATE TABLE ${table} (value text)`);
    await client.query(`INSERT INTO ${table} VALUES ($1)`, [marker]);
  });
  try {
    for (const replica of topology.replicas) {
      await eventually(
        async () => {
          const { rows } = await withClient(clientConfig(topology, replica, topology.users.app), (client) =>
            client.query(`SELECT value FROM ${table}`),
          );
          return rows[0]?.value === marker ? true : undefined;
        },
        { timeoutMs: 15_000, what: `row on ${replica.name}` },
      );
    }
  } finally {
    await withClient(clientConfig(topology, topology.primary, topology.users.app), (client) => client.query(`DROP TABLE ${table}`));
  }
});

async function currentUser(config: pg.ClientConfig): Promise<string> {
  return withClient(config, async (client) => (await client.query('SELECT current_user AS name')).rows[0].name as string);
}

test('each password role logs in with its authentication method', async () => {
  const topology = await getTopology();
  const logins: Array<[string, Login]> = [
    ['scram-sha-256', topology.users.app],
    ['md5', topology.users.app_md5],
    ['password', topology.users.app_clear],
  ];
  for (const [method, login] of logins) {
    assert.equal(await currentUser(clientConfig(topology, topology.primary, login)), login.user, method);
  }
  const { rows } = await superuserQuery(topology, topology.primary,
    "SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('app', 'app_md5') ORDER BY rolname");
  assert.match(rows[0].rolpassword, /^SCRAM-SHA-256\$/, 'app stores a SCRAM verifier');
  assert.match(rows[1].rolpassword, /^md5[0-9a-f]{32}$/, 'app_md5 stores an md5 hash');
});

test('wrong password is refused', async () => {
  const topology = await getTopology();
  const login = { ...topology.users.app, password: 'not-the-password' };
  await assert.rejects(currentUser(clientConfig(topology, topology.primary, login)), /password authentication failed/);
});

test('app_cert logs in with its client certificate over verified TLS', async () => {
  const topology = await getTopology();
  const config = clientConfig(topology, topology.primary, topology.users.app_cert, { tls: 'verify-full', clientCert: true });
  assert.equal(await currentUser(config), 'app_cert');
  const noCert = clientConfig(topology, topology.primary, topology.users.app_cert, { tls: 'verify-full' });
  await assert.rejects(currentUser(noCert), /certificate/i);
});

test('TLS verify-full succeeds with the right CA and fails with the wrong CA', async () => {
  const topology = await getTopology();
  const right = clientConfig(topology, topology.primary, topology.users.app, { tls: 'verify-full' });
  const ssl = await withClient(right, async (client) =>
    (await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl as boolean,
  );
  assert.equal(ssl, true);
  for (const replica of topology.replicas) {
    assert.equal(await currentUser(clientConfig(topology, replica, topology.users.app, { tls: 'verify-full' })), 'app');
  }
  const wrong = clientConfig(topology, topology.primary, topology.users.app, { tls: 'verify-full', ca: topology.certs.wrongCaCert });
  await assert.rejects(currentUser(wrong), (error: NodeJS.ErrnoException) => {
    assert.match(String(error.code ?? error.message), /UNABLE_TO_GET_ISSUER_CERT|unable to get|self.signed|certificate/i);
    return true;
  });
});

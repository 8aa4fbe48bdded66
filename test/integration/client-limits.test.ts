// Client-side limits (listen.*): connections per user, idle and idle-in-transaction timeouts,
// startup parameter count, and the per-user rate limit on new transactions, in both pool modes,
// with real `pg` clients against a real ambassador and Postgres. Each refusal must carry its
// SQLSTATE and leave the ambassador serving everyone else.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { encodeStartupMessage } from '../../src/protocol/startup.ts';
import { CLIENT_PASSWORD, startTestAmbassador, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { expectRefused } from '../support/hostile.ts';
import { RawClient } from '../support/raw-client.ts';
import { clientConfig, eventually, getTopology, type Topology } from '../support/topology.ts';

const OTHER_PASSWORD = 'other-client-secret-51c2';
const MODES = ['session', 'transaction'] as const;

let topology: Topology;
let admin: pg.Client;

before(async () => {
  topology = await getTopology();
  admin = new pg.Client(clientConfig(topology, topology.primary, topology.superuser));
  admin.on('error', () => {});
  await admin.connect();
});
after(async () => {
  await admin?.end().catch(() => {});
});

/** Two client users, both logged in upstream as `app`. */
function twoUsers(overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    ...overrides,
    clientAuth: {
      method: 'scram-sha-256',
      users: [
        { name: 'app', password: CLIENT_PASSWORD },
        { name: 'other', password: OTHER_PASSWORD },
      ],
    },
    upstream: { user: topology.users.app.user },
  };
}

async function connect(amb: TestAmbassador, user = 'app', password = CLIENT_PASSWORD): Promise<pg.Client> {
  const client = new pg.Client(viaAmbassador(amb.port, { user, password }));
  await client.connect();
  return client;
}

/** The first error a client is disconnected with (pg emits it, then "Connection terminated"). */
function disconnection(client: pg.Client): Promise<Error & { code?: string }> {
  return new Promise((resolve) => client.on('error', resolve));
}

async function refusal(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: string }).code;
  }
  assert.fail('expected the statement to be refused');
}

async function withAmbassador(overrides: Record<string, unknown>, body: (amb: TestAmbassador) => Promise<void>): Promise<void> {
  const amb = await startTestAmbassador(topology, overrides);
  try {
    await body(amb);
  } finally {
    await amb.stop();
  }
}

describe('listen.maxClientConnectionsPerUser', () => {
  test('the user at its maximum gets 53300 before AuthenticationOk; other users and later logins are served', async () => {
    await withAmbassador(twoUsers({ listen: { maxClientConnectionsPerUser: 2 } }), async (amb) => {
      const first = await connect(amb);
      const second = await connect(amb);
      const third = new pg.Client(viaAmbassador(amb.port));
      const code = await refusal(third.connect());
      assert.equal(code, '53300');
      const other = await connect(amb, 'other', OTHER_PASSWORD);
      assert.equal((await other.query('select 1 as one')).rows[0].one, 1);
      await first.end();
      // The place is free once the ambassador has seen the close.
      const again = await eventually(async () => connect(amb), { what: 'a login after a client left' });
      assert.equal((await again.query('select 2 as two')).rows[0].two, 2);
      await Promise.all([second.end(), other.end(), again.end()]);
    });
  });
});

describe('listen.maxStartupParameters', () => {
  test('a startup packet with more parameters than allowed is refused with 08P01', async () => {
    await withAmbassador({ listen: { maxStartupParameters: 8 } }, async (amb) => {
      const params = Array.from({ length: 9 }, (_, i): [string, string] => [`application_name_${i}`, 'x']);
      const client = await RawClient.connect(amb.port);
      client.write(encodeStartupMessage([['user', 'app'], ['database', topology.database], ...params]));
      await expectRefused(client, ['08P01'], { message: /more than 8 parameters/ });
      const ok = await connect(amb);
      await ok.end();
    });
  });
});

for (const mode of MODES) {
  describe(`idle timeouts, ${mode} pooling`, () => {
    let amb: TestAmbassador;
    const table = `idle_limits_${mode}`;
    before(async () => {
      await admin.query(`drop table if exists ${table}; create table ${table} (id int); grant all on ${table} to ${topology.users.app.user}`);
      amb = await startTestAmbassador(topology, { pool: { mode, size: 4 }, listen: { clientIdleTimeout: '400ms', idleInTransactionTimeout: '300ms' } });
    });
    after(async () => {
      await amb?.stop();
      await admin.query(`drop table if exists ${table}`);
    });

    test('a client idle between transactions is disconnected with 57P05', async () => {
      const client = await connect(amb);
      const gone = disconnection(client);
      assert.equal((await client.query('select 1 as one')).rows[0].one, 1);
      const err = await gone;
      assert.equal(err.code, '57P05');
      assert.match(err.message, /idle-session timeout/);
    });

    test('a client idle inside a transaction is disconnected with 25P03 and its transaction rolled back', async () => {
      const client = await connect(amb);
      const gone = disconnection(client);
      await client.query('begin');
      await client.query(`insert into ${table} values (1)`);
      const err = await gone;
      assert.equal(err.code, '25P03');
      const { rows } = await admin.query(`select count(*)::int as n from ${table}`);
      assert.equal(rows[0].n, 0);
      // The server it held was rolled back and serves the next client.
      const next = await connect(amb);
      await next.query(`insert into ${table} values (2)`);
      assert.equal((await next.query(`select count(*)::int as n from ${table}`)).rows[0].n, 1);
      await next.end();
    });

    test('a statement running longer than both timeouts is not idleness', async () => {
      const client = await connect(amb);
      client.on('error', () => {});
      const { rows } = await client.query('select pg_sleep(0.9), 7 as seven');
      assert.equal(rows[0].seven, 7);
      await client.query('begin');
      const inside = await client.query('select pg_sleep(0.7), 8 as eight');
      assert.equal(inside.rows[0].eight, 8);
      await client.query('rollback');
      await client.end();
    });
  });
}

for (const mode of MODES) {
  describe(`listen.rateLimit, ${mode} pooling`, () => {
    test('with no turn within maxWait a transaction gets 53400, in simple and extended protocol, and the client stays usable', async () => {
      const overrides = twoUsers({ pool: { mode }, listen: { rateLimit: { transactionsPerSecond: 1, burst: 2, maxWait: '0ms' } } });
      await withAmbassador(overrides, async (amb) => {
        const client = await connect(amb);
        const codes: Array<string | undefined> = [];
        for (let i = 0; i < 4; i++) {
          codes.push(await client.query('select 1').then(() => 'ok', (err: { code?: string }) => err.code));
          codes.push(await client.query('select $1::int as n', [i]).then(() => 'ok', (err: { code?: string }) => err.code));
        }
        assert.ok(codes.includes('53400'), `expected a 53400 among ${codes.join(', ')}`);
        assert.deepEqual(new Set(codes), new Set(['ok', '53400']));
        // Another user has its own bucket.
        const other = await connect(amb, 'other', OTHER_PASSWORD);
        assert.equal((await other.query('select 3 as three')).rows[0].three, 3);
        // The refused client is still connected and runs once the bucket refills.
        const row = await eventually(async () => (await client.query('select $1::int as n', [5])).rows[0], { what: 'a turn under the rate limit' });
        assert.equal(row.n, 5);
        await Promise.all([client.end(), other.end()]);
      });
    });

    test('transactions over the rate wait for their turn instead of failing', async () => {
      const overrides = { pool: { mode }, listen: { rateLimit: { transactionsPerSecond: 20, burst: 1, maxWait: '10s' } } };
      await withAmbassador(overrides, async (amb) => {
        const clients = await Promise.all(Array.from({ length: 4 }, () => connect(amb)));
        const started = performance.now();
        const results = await Promise.all(clients.flatMap((c, i) => [c.query('select $1::int as n', [i]), c.query(`select ${i} as n`)]));
        const elapsed = performance.now() - started;
        assert.deepEqual(
          results.map((r) => Number(r.rows[0].n)),
          [0, 0, 1, 1, 2, 2, 3, 3],
        );
        // 8 transactions, 1 at once and then 20 a second: the last could not start before 7 × 50 ms.
        assert.ok(elapsed >= 340, `8 transactions at 20/s finished in ${elapsed.toFixed(0)} ms`);
        await Promise.all(clients.map((c) => c.end()));
      });
    });
  });
}

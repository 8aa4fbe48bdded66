// Who may reach what (the hardening issue's security review): the admin HTTP endpoint over real
// HTTP (loopback by default; with admin.token every POST and GET /config need it, a reload may
// change it), the SQL admin console through psql (only admin.users, authenticated with the
// client auth method, trust included), and a forced upstream user (upstream.user) that no
// unauthenticated client reaches: counted by the ambassador's upstream connects and by the
// role's backends in pg_stat_activity on the real primary.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { AuthCode } from '../../src/protocol/backend.ts';
import { encodePasswordMessage, encodeQuery, encodeSASLInitialResponse, encodeSASLResponse, encodeTerminate } from '../../src/protocol/frontend.ts';
import { ScramClient } from '../../src/protocol/scram.ts';
import { encodeCancelRequest, encodeStartupMessage } from '../../src/protocol/startup.ts';
import { ambassadorsFor, CLIENT_PASSWORD, startTestAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { assertStillServes, expectRefused } from '../support/hostile.ts';
import { dropRoles, superuserConfig } from '../support/pooling.ts';
import { beginScram, expectAuthRequest, loginScram, RawClient } from '../support/raw-client.ts';
import { captureOutput, TEST_SECRETS, testSecret } from '../support/secrets.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

const run = promisify(execFile);
const TOKEN = TEST_SECRETS.adminToken;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

let topology: Topology;
let superuser: pg.Client;
const ambassadors = ambassadorsFor(() => topology);
const roles: string[] = [];

before(async () => {
  topology = await getTopology();
  superuser = new pg.Client(superuserConfig(topology));
  await superuser.connect();
});
after(async () => {
  await ambassadors.stopAll();
  if (superuser) await dropRoles(superuser, roles);
  await superuser?.end().catch(() => {});
});

const adminUrl = (amb: TestAmbassador, path: string) => `http://127.0.0.1:${amb.ambassador.adminAddress.port}${path}`;

describe('admin HTTP endpoint of a running ambassador', () => {
  test('binds loopback unless told otherwise', async () => {
    const amb = await ambassadors.start({});
    assert.equal(amb.ambassador.config().admin.host, '127.0.0.1');
    assert.equal(amb.ambassador.adminAddress.address, '127.0.0.1');
  });

  test('with admin.token: POST /reload and /quitquitquit need it, GET /config too, probes and /metrics do not', async () => {
    const amb = await ambassadors.start({ admin: { token: TOKEN } });
    const reloads = () => amb.logs().filter((line) => line.msg === 'reloading').length;
    for (const headers of [{}, bearer('wrong'), bearer(TOKEN.slice(0, -1)), { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }]) {
      for (const path of ['/reload', '/quitquitquit']) {
        const res = await fetch(adminUrl(amb, path), { method: 'POST', headers });
        assert.equal(res.status, 401, `POST ${path}`);
        assert.ok(!(await res.text()).includes(TOKEN));
      }
      assert.equal((await fetch(adminUrl(amb, '/config'), { headers })).status, 401, 'GET /config');
    }
    assert.equal(reloads(), 0, 'no reload ran');
    await assertStillServes(amb.port); // and no shutdown began
    for (const path of ['/livez', '/startupz', '/metrics']) assert.equal((await fetch(adminUrl(amb, path))).status, 200, path);
    assert.notEqual((await fetch(adminUrl(amb, '/readyz'))).status, 401);

    const config = await fetch(adminUrl(amb, '/config'), { headers: bearer(TOKEN) });
    assert.equal(config.status, 200);
    const shown = await config.text();
    captureOutput('security-access: GET /config with the token', shown);
    const parsed = JSON.parse(shown) as { admin: { token: string }; upstream: { credentials: { password: string } } };
    assert.equal(parsed.admin.token, '[redacted]');
    assert.equal(parsed.upstream.credentials.password, '[redacted]');
    assert.equal((await fetch(adminUrl(amb, '/reload'), { method: 'POST', headers: bearer(TOKEN) })).status, 200);
    assert.equal(reloads(), 1, 'the reload ran with the token');
    const quit = await fetch(adminUrl(amb, '/quitquitquit'), { method: 'POST', headers: bearer(TOKEN) });
    assert.equal(quit.status, 200);
    await eventually(async () => (await fetch(adminUrl(amb, '/livez')).then(() => undefined, () => true)), { what: 'the ambassador to shut down' });
  });

  test('a reload that changes admin.token takes effect at once: the old token is refused, the new one works', async () => {
    const amb = await startTestAmbassador(topology, { admin: { token: TOKEN } }, undefined, { fromFile: true });
    try {
      amb.writeConfig({ admin: { port: amb.ambassador.adminAddress.port, token: TEST_SECRETS.adminTokenRotated } });
      const res = await fetch(adminUrl(amb, '/reload'), { method: 'POST', headers: bearer(TOKEN) });
      assert.equal(res.status, 200);
      await eventually(async () => ((await fetch(adminUrl(amb, '/config'), { headers: bearer(TOKEN) })).status === 401 ? true : undefined), {
        what: 'the old token to be refused',
      });
      assert.equal((await fetch(adminUrl(amb, '/config'), { headers: bearer(TEST_SECRETS.adminTokenRotated) })).status, 200);
      assert.equal((await fetch(adminUrl(amb, '/reload'), { method: 'POST', headers: bearer(TOKEN) })).status, 401);
    } finally {
      await amb.stop();
    }
  });
});

describe('SQL admin console (psql, database "ambassador")', () => {
  async function psql(amb: TestAmbassador, user: string, password: string | undefined, sql = 'SHOW VERSION'): Promise<string> {
    const env: NodeJS.ProcessEnv = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(amb.port), PGUSER: user, PGDATABASE: 'ambassador', PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' };
    if (password === undefined) delete env.PGPASSWORD;
    else env.PGPASSWORD = password;
    const { stdout } = await run('psql', ['-X', '-A', '-t', '-w', '-v', 'ON_ERROR_STOP=1', '-c', sql], { env });
    return stdout.trim();
  }

  /** psql's error text for a refused login (captured for the secret scan). */
  async function refusedPsql(amb: TestAmbassador, user: string, password: string | undefined): Promise<string> {
    try {
      await psql(amb, user, password);
    } catch (err) {
      const stderr = String((err as { stderr?: string }).stderr);
      captureOutput(`security-access: psql refused as ${user}`, stderr);
      return stderr;
    }
    throw new Error(`psql as ${user} was let into the admin console`);
  }

  test('scram: a listed admin with the right password gets in; a wrong password, an unlisted user, a listed user with no client password do not', async () => {
    const amb = await ambassadors.start({
      clientAuth: { method: 'scram-sha-256', users: [{ name: 'app', password: CLIENT_PASSWORD }, { name: 'ops', password: TEST_SECRETS.consolePassword }] },
      admin: { users: ['ops', 'ghost'] },
    });
    assert.match(await psql(amb, 'ops', TEST_SECRETS.consolePassword), /^pg-ambassador /);
    assert.match(await refusedPsql(amb, 'ops', TEST_SECRETS.wrongPassword), /password authentication failed for user "ops"/);
    assert.match(await refusedPsql(amb, 'ops', undefined), /no password supplied|password authentication failed/);
    assert.match(await refusedPsql(amb, 'app', CLIENT_PASSWORD), /user "app" may not use the admin console/);
    // Listed in admin.users but not in clientAuth.users: it cannot authenticate at all.
    assert.match(await refusedPsql(amb, 'ghost', TEST_SECRETS.consolePassword), /password authentication failed for user "ghost"/);
  });

  test('trust: only users listed in admin.users get the console (and the ambassador warned at start)', async () => {
    const amb = await ambassadors.start({ clientAuth: { method: 'trust', users: [] }, admin: { users: ['ops'] } });
    assert.ok(amb.logs().some((line) => String(line.msg).startsWith('admin.users with clientAuth.method trust')), 'startup warning');
    assert.match(await psql(amb, 'ops', undefined), /^pg-ambassador /);
    for (const user of ['app', 'postgres', topology.superuser.user, 'OPS']) {
      assert.match(await refusedPsql(amb, user, undefined), /may not use the admin console/, user);
    }
  });

  test('trust with no admin.users: the console is off for everyone', async () => {
    const amb = await ambassadors.start({ clientAuth: { method: 'trust', users: [] } });
    for (const user of ['app', 'ops', 'ambassador']) assert.match(await refusedPsql(amb, user, undefined), /may not use the admin console/, user);
  });
});

describe('a forced upstream user (upstream.user) is reached by authenticated clients only', () => {
  const role = `sec_forced_${randomBytes(4).toString('hex')}`;
  const rolePassword = testSecret('forced upstream role password', `forced-${randomBytes(12).toString('hex')}`);
  let amb: TestAmbassador;
  let since: string;

  before(async () => {
    roles.push(role);
    await superuser.query(`CREATE ROLE ${pg.escapeIdentifier(role)} LOGIN PASSWORD ${pg.escapeLiteral(rolePassword)}`);
    amb = await ambassadors.start({
      listen: { loginTimeout: '1s' },
      upstream: { user: role, database: topology.database, credentials: { type: 'password', password: rolePassword } },
    });
    // One host: no health probes (nothing to choose between), so nothing logs in as the role
    // until a client does. Counted from here on all the same.
    since = String((await superuser.query('SELECT clock_timestamp()::text AS t')).rows[0].t);
  });

  async function backendsOf(user: string, startedAfter: string): Promise<number> {
    const { rows } = await superuser.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND backend_start > $2::timestamptz', [user, startedAfter]);
    return rows[0].n as number;
  }

  /** Runs an unauthenticated attempt; nothing may reach the upstream as the forced user. */
  function unauthenticated(name: string, attempt: () => Promise<void>): void {
    test(name, async () => {
      const connects = amb.upstreamConnects();
      await attempt();
      assert.equal(amb.upstreamConnects() - connects, 0, 'upstream connections opened for an unauthenticated client');
      assert.equal(await backendsOf(role, since), 0, `backends of ${role} opened for an unauthenticated client`);
    });
  }

  unauthenticated('a wrong password (the whole SCRAM exchange) is 28P01', async () => {
    const client = await beginScram(amb.port, 'app');
    const scram = new ScramClient({ password: TEST_SECRETS.wrongPassword });
    client.write(encodeSASLInitialResponse(scram.mechanism, scram.clientFirst()));
    const first = (await expectAuthRequest(client, AuthCode.SASLContinue)) as { data: Buffer };
    // A query pipelined behind the proof must not reach anything either.
    client.write([encodeSASLResponse(scram.handleServerFirst(first.data)), encodeQuery('SELECT 1')]);
    const refusal = await expectRefused(client, ['28P01']);
    captureOutput('security-access: refusal of a wrong password', JSON.stringify(refusal));
  });

  unauthenticated('the forced user\'s own name with its upstream password does not log in (not a client user)', async () => {
    const client = await RawClient.connect(amb.port);
    client.write(encodeStartupMessage([['user', role], ['database', topology.database]]));
    await expectAuthRequest(client, AuthCode.SASL);
    const scram = new ScramClient({ password: rolePassword });
    client.write(encodeSASLInitialResponse(scram.mechanism, scram.clientFirst()));
    const first = (await expectAuthRequest(client, AuthCode.SASLContinue)) as { data: Buffer };
    client.write(encodeSASLResponse(scram.handleServerFirst(first.data)));
    const refusal = await expectRefused(client, ['28P01']);
    assert.ok(refusal.kind === 'error' && !refusal.message.includes(rolePassword));
  });

  unauthenticated('no password: a client that hangs up at the password request', async () => {
    const client = await beginScram(amb.port, 'app');
    client.write(encodeTerminate());
    await client.waitForClose();
  });

  unauthenticated('a client expecting trust (says nothing after the startup packet) times out at listen.loginTimeout', async () => {
    const client = await beginScram(amb.port, 'app');
    await expectRefused(client, ['08006', '08P01'], { allowBareClose: true, timeoutMs: 10_000 });
  });

  unauthenticated('a cleartext password where SCRAM was asked is a protocol violation', async () => {
    const client = await beginScram(amb.port, 'app');
    client.write(encodePasswordMessage(CLIENT_PASSWORD));
    await expectRefused(client, ['08P01', '28P01']);
  });

  unauthenticated('a SCRAM exchange abandoned after the server-first message', async () => {
    const client = await beginScram(amb.port, 'app');
    const scram = new ScramClient({ password: CLIENT_PASSWORD });
    client.write(encodeSASLInitialResponse(scram.mechanism, scram.clientFirst()));
    await expectAuthRequest(client, AuthCode.SASLContinue);
    client.destroy();
    await client.waitForClose();
  });

  unauthenticated('a SCRAM exchange answered with a query instead of the proof', async () => {
    const client = await beginScram(amb.port, 'app');
    const scram = new ScramClient({ password: CLIENT_PASSWORD });
    client.write(encodeSASLInitialResponse(scram.mechanism, scram.clientFirst()));
    await expectAuthRequest(client, AuthCode.SASLContinue);
    client.write(encodeQuery('SELECT 1'));
    await expectRefused(client, ['08P01']);
  });

  unauthenticated('a CancelRequest with a made-up key', async () => {
    const client = await RawClient.connect(amb.port);
    client.write(encodeCancelRequest(12345, randomBytes(4)));
    await client.waitForClose();
  });

  unauthenticated('another user name with the client password, and the admin console database, are refused', async () => {
    for (const user of ['postgres', topology.superuser.user, 'App']) {
      const client = await beginScram(amb.port, user);
      const scram = new ScramClient({ password: CLIENT_PASSWORD });
      client.write(encodeSASLInitialResponse(scram.mechanism, scram.clientFirst()));
      const first = (await expectAuthRequest(client, AuthCode.SASLContinue)) as { data: Buffer };
      client.write(encodeSASLResponse(scram.handleServerFirst(first.data)));
      await expectRefused(client, ['28P01']);
    }
    const console = await RawClient.connect(amb.port);
    console.write(encodeStartupMessage([['user', 'app'], ['database', 'ambassador']]));
    const scram = new ScramClient({ password: CLIENT_PASSWORD });
    await expectAuthRequest(console, AuthCode.SASL);
    console.write(encodeSASLInitialResponse(scram.mechanism, scram.clientFirst()));
    const first = (await expectAuthRequest(console, AuthCode.SASLContinue)) as { data: Buffer };
    console.write(encodeSASLResponse(scram.handleServerFirst(first.data)));
    await expectRefused(console, ['28000'], { message: /may not use the admin console/ });
  });

  test('an authenticated client is the forced user upstream, and the same counting sees its backend', async () => {
    const client = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: topology.database });
    try {
      const replies = await client.query('SELECT current_user');
      const row = replies.find((message) => message.type === 'D');
      assert.ok(row, 'a row');
      assert.ok(row.payload.includes(Buffer.from(role)), 'current_user is the forced role');
      assert.ok((await backendsOf(role, since)) >= 1, 'its backend is counted');
    } finally {
      client.destroy();
    }
  });
});

// The ambassador as a client of real Postgres: every upstream TLS mode, each server-side auth
// method (scram, md5, cleartext, client certificate), startup parameters carried through, and
// clear errors when the upstream refuses (wrong CA, wrong password, missing database, down).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { TcpConnector, type Connector } from '../../src/backend/connector.ts';
import { ambassadorsFor, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { getTopology, refusingPort, type Topology } from '../support/topology.ts';

let topology: Topology;
const ambassadors = ambassadorsFor(() => topology);
const ambassador = ambassadors.start;

before(async () => {
  topology = await getTopology();
});
after(() => ambassadors.stopAll());

/** Connects through the ambassador and returns what the server says about the session. */
async function probe(amb: TestAmbassador, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const client = new pg.Client(viaAmbassador(amb.port, extra) as pg.ClientConfig);
  await client.connect();
  try {
    const { rows } = await client.query(
      `select current_user as "user", coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false) as ssl,
              current_setting('application_name') as app, current_setting('search_path') as search_path,
              current_setting('statement_timeout') as statement_timeout, current_setting('DateStyle') as datestyle`,
    );
    return rows[0] as Record<string, unknown>;
  } finally {
    await client.end();
  }
}

/** Connects through the ambassador expecting a refusal; returns the error. */
async function refused(amb: TestAmbassador, extra: Record<string, unknown> = {}): Promise<{ code?: string; message: string; hint?: string }> {
  const client = new pg.Client(viaAmbassador(amb.port, extra) as pg.ClientConfig);
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return err as { code?: string; message: string; hint?: string };
  } finally {
    await client.end().catch(() => {});
  }
  throw new Error('the connection was expected to be refused');
}

describe('upstream TLS modes', () => {
  test('verify-full with the right CA connects over TLS', async () => {
    const amb = await ambassador({});
    const info = await probe(amb);
    assert.equal(info.user, 'app');
    assert.equal(info.ssl, true);
  });

  test('verify-full with the wrong CA is refused with a clear error naming TLS', async () => {
    const amb = await ambassador({ upstream: { tls: { mode: 'verify-full', ca: topology.certs.wrongCaCert } } });
    const err = await refused(amb);
    assert.equal(err.code, '08001');
    assert.match(err.message, /TLS with 127\.0\.0\.1:\d+ failed \(verify-full\)/);
    assert.match(err.message, /certificate/i);
    assert.match(err.hint ?? '', /upstream\.tls\.ca/);
  });

  test('verify-full refuses a server name the certificate does not carry; verify-ca accepts it', async () => {
    const wrongName = await ambassador({ upstream: { tls: { mode: 'verify-full', serverName: 'db.example.invalid' } } });
    const err = await refused(wrongName);
    assert.equal(err.code, '08001');
    assert.match(err.message, /db\.example\.invalid/);
    const caOnly = await ambassador({ upstream: { tls: { mode: 'verify-ca', serverName: 'db.example.invalid' } } });
    assert.equal((await probe(caOnly)).ssl, true);
  });

  test('require encrypts without verifying; disable does not encrypt', async () => {
    const require = await ambassador({ upstream: { tls: { mode: 'require', ca: null, serverName: null } } });
    assert.equal((await probe(require)).ssl, true);
    const disable = await ambassador({ upstream: { tls: { mode: 'disable', ca: null, serverName: null } } });
    assert.equal((await probe(disable)).ssl, false);
  });
});

describe('upstream authentication methods', () => {
  test('md5 (app_md5) and cleartext (app_clear) upstream logins', async () => {
    const md5 = await ambassador({ upstream: { user: 'app_md5', credentials: { type: 'password', password: topology.users.app_md5.password } } });
    assert.equal((await probe(md5)).user, 'app_md5');
    const clear = await ambassador({ upstream: { user: 'app_clear', credentials: { type: 'password', password: topology.users.app_clear.password } } });
    assert.equal((await probe(clear)).user, 'app_clear');
  });

  test('client certificate (mTLS) with no password at all', async () => {
    const amb = await ambassador({
      upstream: {
        user: 'app_cert',
        credentials: null,
        tls: { mode: 'verify-full', cert: topology.certs.clientCert, key: topology.certs.clientKey },
      },
    });
    const info = await probe(amb);
    assert.equal(info.user, 'app_cert');
    assert.equal(info.ssl, true);
  });

  test('a wrong upstream password is the ambassador’s problem: 08001 with a hint, no secret in it', async () => {
    const amb = await ambassador({ upstream: { credentials: { type: 'password', password: 'definitely-wrong-pw-31337' } } });
    const err = await refused(amb);
    assert.equal(err.code, '08001');
    assert.match(err.message, /upstream authentication to 127\.0\.0\.1:\d+ failed/);
    assert.match(err.hint ?? '', /upstream\.credentials/);
    assert.doesNotMatch(`${err.message} ${err.hint}`, /definitely-wrong-pw-31337/);
    assert.doesNotMatch(amb.logText(), /definitely-wrong-pw-31337/);
  });

  test('the file provider reads the password at each login', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(`${tmpdir()}/pg-amb-cred-`);
    try {
      writeFileSync(`${dir}/password`, 'wrong-at-first\n');
      const amb = await ambassador({ upstream: { credentials: { type: 'file', path: `${dir}/password` } } });
      assert.equal((await refused(amb)).code, '08001');
      writeFileSync(`${dir}/password`, `${topology.users.app.password}\n`);
      assert.equal((await probe(amb)).user, 'app');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('what the client sees of the upstream', () => {
  test('startup parameters reach the server: application_name, options, DateStyle', async () => {
    const amb = await ambassador({});
    const info = await probe(amb, {
      application_name: 'ambassador-startup-test',
      options: '-c search_path=pg_catalog,public -c statement_timeout=4321 -c DateStyle=SQL,DMY',
    });
    assert.equal(info.app, 'ambassador-startup-test');
    assert.equal(info.search_path, 'pg_catalog,public');
    assert.equal(info.statement_timeout, '4321ms');
    assert.equal(info.datestyle, 'SQL, DMY');
  });

  test('a Unix socket directory as the upstream host', async () => {
    const amb = await ambassador({
      upstream: { hosts: [{ host: `${topology.baseDir}/sockets`, port: topology.primary.port, role: 'primary' }], tls: { mode: 'prefer', ca: null, serverName: null } },
    });
    const info = await probe(amb);
    assert.equal(info.user, 'app');
    assert.equal(info.ssl, false);
  });

  test('a database that does not exist is reported as the server words it (3D000)', async () => {
    const amb = await ambassador({});
    const err = await refused(amb, { database: 'no_such_database_here' });
    assert.equal(err.code, '3D000');
    assert.match(err.message, /database "no_such_database_here" does not exist/);
  });

  test('a slow upstream connect is not blamed on the client as a login timeout', async () => {
    const tcp = new TcpConnector();
    const slow: Connector = {
      connect: async (target, tls, timeoutMs) => {
        await new Promise((resolve) => setTimeout(resolve, 800));
        return tcp.connect(target, tls, timeoutMs);
      },
    };
    const amb = await ambassador({ listen: { loginTimeout: '300ms' } }, slow);
    assert.equal((await probe(amb)).user, 'app');
  });

  test('an upstream that refuses TCP gives 08001 naming the address', async (t) => {
    const refusing = await refusingPort();
    t.after(() => refusing.close());
    const port = refusing.port;
    const amb = await ambassador({ upstream: { hosts: [{ host: '127.0.0.1', port, role: 'primary' }] } });
    const err = await refused(amb);
    assert.equal(err.code, '08001');
    assert.match(err.message, new RegExp(`could not connect to 127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
  });

  test('no password of any test reached the logs', () => {
    const secrets = [topology.users.app.password, topology.users.app_md5.password, topology.users.app_clear.password, topology.superuser.password];
    const text = ambassadors.all().map((a) => a.logText()).join('\n');
    assert.ok(text.length > 0);
    for (const secret of secrets) assert.ok(!text.includes(secret), 'a password appeared in the ambassador logs');
  });
});

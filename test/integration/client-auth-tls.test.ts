// The ambassador as a server for clients: TLS on the listener (verified by real clients),
// SCRAM with channel binding, TLS required, md5 and trust, stored verifiers and hashes.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { md5PasswordHash } from '../../src/protocol/md5.ts';
import { buildScramVerifier, formatScramVerifier } from '../../src/protocol/scram.ts';
import { ambassadorsFor, CLIENT_PASSWORD, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { getTopology, type Topology } from '../support/topology.ts';

const run = promisify(execFile);
let topology: Topology;
const ambassadors = ambassadorsFor(() => topology);
const ambassador = ambassadors.start;

before(async () => {
  topology = await getTopology();
});
after(() => ambassadors.stopAll());

const listenTls = () => ({ listen: { tls: { cert: topology.certs.serverCert, key: topology.certs.serverKey } } });

async function login(amb: TestAmbassador, extra: Record<string, unknown> = {}): Promise<pg.Client> {
  const client = new pg.Client(viaAmbassador(amb.port, extra) as pg.ClientConfig);
  await client.connect();
  return client;
}

async function loginError(amb: TestAmbassador, extra: Record<string, unknown> = {}): Promise<{ code?: string; message: string }> {
  const client = new pg.Client(viaAmbassador(amb.port, extra) as pg.ClientConfig);
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return err as { code?: string; message: string };
  } finally {
    await client.end().catch(() => {});
  }
  throw new Error('login was expected to fail');
}

/** The `client session ready` log lines of an ambassador. */
function sessions(amb: TestAmbassador): Array<Record<string, unknown>> {
  return amb.logs().filter((l) => l.msg === 'client logged in');
}

describe('TLS toward clients', () => {
  test('a client verifying the ambassador’s certificate (verify-full) logs in over TLS with SCRAM-SHA-256-PLUS', async () => {
    const amb = await ambassador(listenTls());
    const client = await login(amb, { ssl: { ca: readFileSync(topology.certs.caCert, 'utf8'), servername: 'localhost' }, enableChannelBinding: true });
    try {
      assert.equal((await client.query('select 1 as one')).rows[0].one, 1);
    } finally {
      await client.end();
    }
    const [ready] = sessions(amb);
    assert.equal(ready?.tls, true);
    assert.equal(ready?.auth, 'SCRAM-SHA-256-PLUS');
  });

  test('psql with sslmode=verify-full and channel_binding=require works through the ambassador', async () => {
    const amb = await ambassador(listenTls());
    const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', 'select 40 + 2'], {
      env: {
        ...process.env,
        PGHOST: 'localhost',
        PGPORT: String(amb.port),
        PGUSER: 'app',
        PGDATABASE: 'app',
        PGPASSWORD: CLIENT_PASSWORD,
        PGSSLMODE: 'verify-full',
        PGSSLROOTCERT: topology.certs.caCert,
        PGCHANNELBINDING: 'require',
      },
    });
    assert.equal(stdout.trim(), '42');
    assert.equal(sessions(amb)[0]?.auth, 'SCRAM-SHA-256-PLUS');
  });

  test('without TLS the same listener still serves plain SCRAM', async () => {
    const amb = await ambassador(listenTls());
    const client = await login(amb);
    await client.end();
    assert.deepEqual([sessions(amb)[0]?.tls, sessions(amb)[0]?.auth], [false, 'SCRAM-SHA-256']);
  });

  test('listen.tls.required refuses a plaintext client with 28000 before authentication', async () => {
    const amb = await ambassador({ listen: { tls: { cert: topology.certs.serverCert, key: topology.certs.serverKey, required: true } } });
    const err = await loginError(amb);
    assert.equal(err.code, '28000');
    assert.equal(amb.upstreamConnects(), 0);
    const client = await login(amb, { ssl: { ca: readFileSync(topology.certs.caCert, 'utf8'), servername: 'localhost' } });
    await client.end();
  });
});

describe('client authentication methods', () => {
  test('md5 with a plaintext password, and with a stored md5 hash', async () => {
    for (const password of [CLIENT_PASSWORD, md5PasswordHash('app', CLIENT_PASSWORD)]) {
      const amb = await ambassador({ clientAuth: { method: 'md5', users: [{ name: 'app', password }] } });
      const client = await login(amb);
      await client.end();
      assert.equal(sessions(amb)[0]?.auth, 'md5');
      const err = await loginError(amb, { password: 'not-the-password' });
      assert.equal(err.code, '28P01');
    }
  });

  test('scram with a stored SCRAM verifier (no plaintext in the config)', async () => {
    const verifier = formatScramVerifier(buildScramVerifier(CLIENT_PASSWORD));
    const amb = await ambassador({ clientAuth: { method: 'scram-sha-256', users: [{ name: 'app', password: verifier }] } });
    const client = await login(amb);
    await client.end();
    assert.equal((await loginError(amb, { password: 'nope' })).code, '28P01');
  });

  test('an unknown user fails exactly like a wrong password, and opens nothing upstream', async () => {
    const amb = await ambassador({});
    const unknown = await loginError(amb, { user: 'nobody_here' });
    const wrong = await loginError(amb, { password: 'nope' });
    assert.equal(unknown.code, '28P01');
    assert.equal(wrong.code, '28P01');
    assert.equal(unknown.message.replace('nobody_here', 'X'), wrong.message.replace('app', 'X'));
    assert.equal(amb.upstreamConnects(), 0);
  });

  test('trust lets any configured-upstream login through without a password prompt', async () => {
    const amb = await ambassador({ clientAuth: { method: 'trust', users: [] } });
    const client = await login(amb, { password: undefined });
    assert.equal((await client.query('select current_user as u')).rows[0].u, 'app');
    await client.end();
    assert.equal(sessions(amb)[0]?.auth, 'trust');
  });
});

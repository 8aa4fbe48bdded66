// TLS material rotated on disk while the ambassador runs, against a private real Postgres:
// a server certificate re-issued by a new CA (then the CA file replaced), a client certificate
// for mTLS re-issued by a new client CA, and the listener's own certificate. New connections use
// the new material without a restart; established ones keep working throughout.
// The scenarios run in order on one server: each records which CA signs the server's cert now.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { generateCerts, type ClusterCerts } from '../../src/demo/certs.ts';
import { ambassadorsFor, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { eventually, startCluster, type LocalCluster, type Topology } from '../support/topology.ts';

let cluster: LocalCluster | undefined;
let topology: Topology;
let work: string;
/** New CAs with their server and client (CN=app_cert) certificates, made for the rotations. */
let rotated1: ClusterCerts;
let rotated2: ClusterCerts;
/** The CA that signed the certificate the server presents now. */
let serverCa: string;
const ambassadors = ambassadorsFor(() => topology);

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-tls-rotation-'));
  const started = startCluster({ replicas: 0 });
  [cluster, rotated1, rotated2] = await Promise.all([
    started,
    generateCerts(path.join(work, 'rotated1'), { clientUser: 'app_cert' }),
    generateCerts(path.join(work, 'rotated2'), { clientUser: 'app_cert' }),
  ]);
  topology = cluster.describe();
  serverCa = topology.certs.caCert;
});
after(async () => {
  await ambassadors.stopAll();
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** Write beside the target, then rename over it: readers see the old file or the new, whole. */
function writeAtomic(file: string, from: string): void {
  const temp = `${file}.tmp-${process.hrtime.bigint()}`;
  writeFileSync(temp, readFileSync(from));
  renameSync(temp, file);
}

function copyToWork(from: string, name: string): string {
  const to = path.join(work, name);
  copyFileSync(from, to);
  return to;
}

const fingerprint = (certFile: string): string => new X509Certificate(readFileSync(certFile)).fingerprint256;

let databases = 0;
/** A database no server connection of the pool is logged in to yet, so using it needs a new login. */
async function freshDatabase(): Promise<string> {
  const name = `rotation_${++databases}`;
  await cluster!.primary.query(`CREATE DATABASE ${name} OWNER app`);
  return name;
}

/** Overwrites the server's own TLS files in place (keeping owner and mode) and reloads its config. */
async function replaceServerFiles(files: { cert?: string; key?: string; ca?: string }): Promise<void> {
  const { certs } = topology;
  if (files.cert) writeFileSync(certs.serverCert, readFileSync(files.cert));
  if (files.key) writeFileSync(certs.serverKey, readFileSync(files.key));
  if (files.ca) writeFileSync(certs.caCert, readFileSync(files.ca));
  await cluster!.primary.query('SELECT pg_reload_conf()');
}

/** A direct login to the server (not through the ambassador). */
async function directLogin(config: pg.ClientConfig): Promise<true> {
  const client = new pg.Client({ host: topology.primary.host, port: topology.primary.port, database: 'app', connectionTimeoutMillis: 5000, ...config });
  await connectOrDrop(client);
  try {
    await client.query('select 1');
    return true;
  } finally {
    await client.end();
  }
}

/**
 * connect(), and after a failed one close the socket instead of calling end(): pg's end() can
 * wait forever for an 'end' event that already passed when the peer broke off inside TLS (seen
 * with a refused client certificate under TLSv1.3).
 */
async function connectOrDrop(client: pg.Client): Promise<void> {
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    (client as unknown as PgInternals).connection.stream.destroy();
    throw err;
  }
}

/** pg keeps its socket here; the tests read the peer certificate from it and close it on failure. */
interface PgInternals {
  connection: { stream: tls.TLSSocket };
}

async function connectVia(amb: TestAmbassador, extra: Record<string, unknown> = {}): Promise<pg.Client> {
  const client = new pg.Client(viaAmbassador(amb.port, extra) as pg.ClientConfig);
  client.on('error', () => {});
  await client.connect();
  return client;
}

async function refusedVia(amb: TestAmbassador, extra: Record<string, unknown>): Promise<{ code?: string; message: string }> {
  const client = new pg.Client(viaAmbassador(amb.port, extra) as pg.ClientConfig);
  try {
    await connectOrDrop(client);
  } catch (err) {
    return err as { code?: string; message: string };
  }
  await client.end();
  throw new Error(`a login to ${String(extra.database)} through the ambassador was expected to fail`);
}

/** What the server says about the session behind `client`. */
async function session(client: pg.Client): Promise<{ user: string; ssl: boolean; client_serial: string | null }> {
  const { rows } = await client.query(
    `select current_user as "user", ssl, client_serial::text as client_serial from pg_stat_ssl where pid = pg_backend_pid()`,
  );
  return rows[0] as { user: string; ssl: boolean; client_serial: string | null };
}

const reloads = (amb: TestAmbassador, scope: 'upstream' | 'listen'): number =>
  amb.logs().filter((line) => line.msg === 'TLS material reloaded' && line.scope === scope).length;

/** Waits (with a deadline) until the ambassador logged one more successful reload of `scope`. */
async function reloaded(amb: TestAmbassador, scope: 'upstream' | 'listen', before: number): Promise<void> {
  await eventually(async () => (reloads(amb, scope) > before ? true : undefined), { timeoutMs: 10_000, what: `a ${scope} TLS reload` });
}

// A hang fails the suite (and after() still stops everything) instead of blocking the run.
describe('TLS material rotated on disk, no restart', { timeout: 120_000 }, () => {
  test('server certificate re-issued by a new CA: new logins fail until the CA file is replaced, then succeed', async () => {
    const caFile = copyToWork(serverCa, 'upstream-ca.crt');
    const amb = await ambassadors.start({ upstream: { tls: { mode: 'verify-full', ca: caFile, serverName: 'localhost' } } });
    const established = await connectVia(amb);
    assert.equal((await session(established)).ssl, true);

    await replaceServerFiles({ cert: rotated1.serverCert, key: rotated1.serverKey });
    await eventually(() => directLogin({ ...topology.superuser, ssl: { ca: readFileSync(rotated1.caCert, 'utf8'), servername: 'localhost' } }),
      { what: 'the server presenting its re-issued certificate' });
    serverCa = rotated1.caCert;

    const refusedDb = await freshDatabase();
    const err = await refusedVia(amb, { database: refusedDb });
    assert.equal(err.code, '08001');
    assert.match(err.message, /TLS with 127\.0\.0\.1:\d+ failed \(verify-full\)/);
    assert.equal((await established.query('select 1 as one')).rows[0].one, 1, 'the established session is untouched');

    const before = reloads(amb, 'upstream');
    writeAtomic(caFile, rotated1.caCert);
    await reloaded(amb, 'upstream', before);
    for (const database of [await freshDatabase(), refusedDb]) {
      const client = await connectVia(amb, { database });
      assert.deepEqual(await session(client), { user: 'app', ssl: true, client_serial: null });
      await client.end();
    }
    assert.equal((await established.query('select 2 as two')).rows[0].two, 2);
    await established.end();
  });

  test('client certificate (mTLS) re-issued by a new client CA: new upstream logins present the new certificate', async () => {
    const files = { ca: copyToWork(serverCa, 'mtls-ca.crt'), cert: copyToWork(topology.certs.clientCert, 'client.crt'), key: copyToWork(topology.certs.clientKey, 'client.key') };
    const amb = await ambassadors.start({ upstream: { user: 'app_cert', credentials: null, tls: { mode: 'verify-full', ...files } } });
    const established = await connectVia(amb);
    const oldSerial = BigInt(`0x${new X509Certificate(readFileSync(topology.certs.clientCert)).serialNumber}`).toString();
    assert.deepEqual(await session(established), { user: 'app_cert', ssl: true, client_serial: oldSerial });

    // The server now trusts only the new client CA.
    await replaceServerFiles({ ca: rotated2.caCert });
    const serverTrust = readFileSync(serverCa, 'utf8');
    await eventually(
      () => directLogin({ user: 'app_cert', ssl: { ca: serverTrust, servername: 'localhost', cert: readFileSync(rotated2.clientCert, 'utf8'), key: readFileSync(rotated2.clientKey, 'utf8') } }),
      { what: 'the server trusting the new client CA' },
    );
    await assert.rejects(
      directLogin({ user: 'app_cert', ssl: { ca: serverTrust, servername: 'localhost', cert: readFileSync(files.cert, 'utf8'), key: readFileSync(files.key, 'utf8') } }),
      /unknown ca|certificate/i,
      'the server refuses the old client certificate now',
    );
    // Through the ambassador the refusal (a TLS alert after the TLS 1.3 handshake) is a TLS
    // failure at once: not retried, not taken for an unreachable primary.
    const refused = await refusedVia(amb, { database: await freshDatabase() });
    assert.match(refused.message, /refused the TLS session during login/);

    const before = reloads(amb, 'upstream');
    writeAtomic(files.key, rotated2.clientKey);
    writeAtomic(files.cert, rotated2.clientCert);
    await reloaded(amb, 'upstream', before);
    const client = await connectVia(amb, { database: await freshDatabase() });
    const newSerial = BigInt(`0x${new X509Certificate(readFileSync(rotated2.clientCert)).serialNumber}`).toString();
    assert.deepEqual(await session(client), { user: 'app_cert', ssl: true, client_serial: newSerial });
    await client.end();
    assert.deepEqual(await session(established), { user: 'app_cert', ssl: true, client_serial: oldSerial }, 'the established session is untouched');
    await established.end();
  });

  test('the listener’s certificate replaced on disk: new client TLS connections see it, established ones keep working', async () => {
    // Independent of the cluster's files (the scenarios above rewrote them): rotated2 -> rotated1.
    const cert = copyToWork(rotated2.serverCert, 'listen.crt');
    const key = copyToWork(rotated2.serverKey, 'listen.key');
    const amb = await ambassadors.start({ listen: { tls: { cert, key } }, upstream: { tls: { ca: serverCa } } });
    const oldCa = readFileSync(rotated2.caCert, 'utf8');
    const newCa = readFileSync(rotated1.caCert, 'utf8');
    const peer = (client: pg.Client): string => (client as unknown as PgInternals).connection.stream.getPeerCertificate().fingerprint256;

    const established = await connectVia(amb, { ssl: { ca: oldCa, servername: 'localhost' } });
    assert.equal(peer(established), fingerprint(rotated2.serverCert));

    const before = reloads(amb, 'listen');
    writeAtomic(key, rotated1.serverKey);
    writeAtomic(cert, rotated1.serverCert);
    await reloaded(amb, 'listen', before);
    const fresh = await connectVia(amb, { ssl: { ca: newCa, servername: 'localhost' } });
    assert.equal(peer(fresh), fingerprint(rotated1.serverCert));
    assert.equal((await fresh.query('select 1 as one')).rows[0].one, 1);
    await fresh.end();
    const stale = await refusedVia(amb, { ssl: { ca: oldCa, servername: 'localhost' } });
    assert.match(stale.message, /self[- ]signed|unable to (get|verify)|signature/i);
    assert.equal((await established.query('select 1 as one')).rows[0].one, 1, 'the established client session is untouched');
    await established.end();
  });
});

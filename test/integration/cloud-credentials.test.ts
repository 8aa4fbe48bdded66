// Cloud IAM tokens reaching a real Postgres as the password, through the in-process ambassador and
// the real SDKs. Fake token endpoints on 127.0.0.1 stand in for the GCP metadata server
// (GCE_METADATA_HOST) and Azure's App Service managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER);
// each test role's password is set to the token the fake endpoint hands out. A first token lives
// a few seconds: the ambassador must fetch the next one ahead of expiry (we wait until the fake
// endpoint was asked again and the ambassador holds the new one), and a login needing a new
// server connection must then use it. GCP also logs in as the trimmed service account user.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { ambassadorsFor, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { dropRoles, superuserConfig } from '../support/pooling.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

/** A fake token endpoint: hands out `current`, counts the requests and what they asked for. */
interface FakeIssuer {
  current: { token: string; lifetimeS: number };
  requests: number;
  /** The scope (GCP) or resource (Azure) of each token request. */
  asked: Set<string | null>;
  server: http.Server;
  port: number;
}

let topology: Topology;
let admin: pg.Client;
const ambassadors = ambassadorsFor(() => topology);
const roles: string[] = [];
const issuers: FakeIssuer[] = [];
const emptyDir = mkdtempSync(path.join(os.tmpdir(), 'pa-cloud-creds-'));
const savedEnv = { ...process.env };

async function startIssuer(body: (issuer: FakeIssuer, req: http.IncomingMessage) => { status: number; headers: Record<string, string>; text: string }): Promise<FakeIssuer> {
  const issuer = { current: { token: '', lifetimeS: 0 }, requests: 0, asked: new Set() } as FakeIssuer;
  issuer.server = http.createServer((req, res) => {
    const reply = body(issuer, req);
    res.writeHead(reply.status, reply.headers);
    res.end(reply.text);
  });
  await new Promise<void>((resolve) => issuer.server.listen(0, '127.0.0.1', resolve));
  issuer.port = (issuer.server.address() as AddressInfo).port;
  issuers.push(issuer);
  return issuer;
}

let gcp: FakeIssuer;
let azure: FakeIssuer;

before(async () => {
  topology = await getTopology();
  admin = new pg.Client(superuserConfig(topology));
  admin.on('error', () => {}); // a file run on its own stops its private cluster before our after()
  await admin.connect();

  gcp = await startIssuer((issuer, req) => {
    const headers = { 'Metadata-Flavor': 'Google', 'Content-Type': 'application/json' };
    const url = new URL(req.url ?? '/', 'http://metadata');
    if (url.pathname === '/computeMetadata/v1/instance/service-accounts/default/token') {
      issuer.requests++;
      issuer.asked.add(url.searchParams.get('scopes'));
      return { status: 200, headers, text: JSON.stringify({ access_token: issuer.current.token, expires_in: issuer.current.lifetimeS, token_type: 'Bearer' }) };
    }
    if (url.pathname.startsWith('/computeMetadata/v1/instance')) return { status: 200, headers, text: '{}' };
    return { status: 404, headers, text: '{}' };
  });
  azure = await startIssuer((issuer, req) => {
    const url = new URL(req.url ?? '/', 'http://identity');
    issuer.requests++;
    issuer.asked.add(url.searchParams.get('resource'));
    const expiresOn = Math.floor(Date.now() / 1000) + issuer.current.lifetimeS;
    const text = JSON.stringify({ access_token: issuer.current.token, expires_on: String(expiresOn), resource: 'https://ossrdbms-aad.database.windows.net', token_type: 'Bearer' });
    return { status: 200, headers: { 'Content-Type': 'application/json' }, text };
  });

  // Only the fake endpoints may answer: no developer logins, no real metadata servers.
  for (const name of Object.keys(process.env)) {
    if (/^(AZURE_|IDENTITY_|MSI_|IMDS_ENDPOINT$|GCE_METADATA_|GOOGLE_|GCLOUD_|CLOUDSDK_|METADATA_SERVER_DETECTION$)/.test(name)) delete process.env[name];
  }
  Object.assign(process.env, {
    HOME: emptyDir,
    CLOUDSDK_CONFIG: emptyDir,
    AZURE_CONFIG_DIR: emptyDir,
    GCE_METADATA_HOST: `127.0.0.1:${gcp.port}`,
    METADATA_SERVER_DETECTION: 'ping-only',
    GOOGLE_CLOUD_PROJECT: 'pa-test-project',
    IDENTITY_ENDPOINT: `http://127.0.0.1:${azure.port}/msi/token`,
    IDENTITY_HEADER: 'fake-identity-header',
  });
});

after(async () => {
  await ambassadors.stopAll();
  if (admin) await dropRoles(admin, roles);
  await admin?.end().catch(() => {});
  await Promise.all(issuers.map((issuer) => new Promise<void>((resolve) => issuer.server.close(() => resolve()))));
  for (const name of Object.keys(process.env)) if (!(name in savedEnv)) delete process.env[name];
  Object.assign(process.env, savedEnv);
  rmSync(emptyDir, { recursive: true, force: true });
});

const newToken = (prefix: string): string => `${prefix}${randomBytes(24).toString('hex')}`;

async function createRole(role: string, password: string): Promise<void> {
  roles.push(role);
  await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`);
  await admin.query(`CREATE ROLE ${pg.escapeIdentifier(role)} LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
}

const setPassword = (role: string, password: string) => admin.query(`ALTER ROLE ${pg.escapeIdentifier(role)} PASSWORD ${pg.escapeLiteral(password)}`);

/** Who the server says we are, through the ambassador, on `database`. */
async function currentUser(amb: TestAmbassador, database: string): Promise<string> {
  const client = new pg.Client(viaAmbassador(amb.port, { database }));
  client.on('error', () => {});
  await client.connect();
  try {
    return String((await client.query('SELECT current_user AS who')).rows[0].who);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * The token rotation both providers go through: T1 (short-lived) works, then the endpoint and the
 * role switch to T2; once the ambassador fetched T2 ahead of T1's expiry, a login that needs a new
 * server connection (another database) succeeds with T2 alone.
 */
async function rotate(amb: TestAmbassador, issuer: FakeIssuer, role: string, t2: string): Promise<void> {
  const asked = issuer.requests;
  issuer.current = { token: t2, lifetimeS: 3600 };
  await setPassword(role, t2);
  await eventually(async () => (issuer.requests > asked ? true : undefined), { timeoutMs: 15_000, what: 'the ambassador to ask the token endpoint again' });
  await eventually(
    async () => (amb.ambassador.credentials().some((entry) => (entry.expiresAt?.getTime() ?? 0) > Date.now() + 600_000) ? true : undefined),
    { timeoutMs: 5_000, what: 'the ambassador to hold the long-lived second token' },
  );
  assert.equal(await currentUser(amb, 'postgres'), role, 'a new server connection logs in with the second token');
}

function assertNoTokens(amb: TestAmbassador, tokens: string[]): void {
  const text = amb.logText();
  for (const token of tokens) assert.ok(!text.includes(token), 'no token in the ambassador\'s logs');
}

test('gcp-cloudsql-iam: metadata server tokens log in as the trimmed service account, and are refreshed ahead of expiry', async () => {
  const role = 'pa-gcp@proj.iam';
  const t1 = newToken('ya29.');
  const t2 = newToken('ya29.');
  gcp.current = { token: t1, lifetimeS: 4 };
  await createRole(role, t1);
  const amb = await ambassadors.start({
    upstream: { user: 'pa-gcp@proj.iam.gserviceaccount.com', credentials: { type: 'gcp-cloudsql-iam', refreshMargin: '1s' } },
  });
  assert.equal(await currentUser(amb, topology.database), role, 'logged in with T1 as the trimmed user');
  assert.ok(gcp.requests >= 1);
  await rotate(amb, gcp, role, t2);
  assert.deepEqual([...gcp.asked], ['https://www.googleapis.com/auth/sqlservice.login']);
  assertNoTokens(amb, [t1, t2]);
});

test('azure-ad: managed identity tokens log in, and are refreshed ahead of expiry', async () => {
  const role = 'pa-azure-app';
  const t1 = newToken('eyJ0.');
  const t2 = newToken('eyJ0.');
  azure.current = { token: t1, lifetimeS: 5 };
  await createRole(role, t1);
  const amb = await ambassadors.start({
    upstream: { user: role, credentials: { type: 'azure-ad', refreshMargin: '1s' } },
  });
  assert.equal(await currentUser(amb, topology.database), role, 'logged in with T1');
  assert.ok(azure.requests >= 1);
  await rotate(amb, azure, role, t2);
  assert.deepEqual([...azure.asked], ['https://ossrdbms-aad.database.windows.net']);
  assertNoTokens(amb, [t1, t2]);
});

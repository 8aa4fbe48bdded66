// The Azure AD provider with the real @azure/identity (DefaultAzureCredential -> managed identity
// through MSAL), against a fake App Service identity endpoint on 127.0.0.1 (IDENTITY_ENDPOINT +
// IDENTITY_HEADER). Every other AZURE_*/identity variable is unset and HOME / AZURE_CONFIG_DIR
// point at an empty directory, so no login of the machine's own takes part.
// MSAL caches tokens process-wide by client id and resource, so each test uses its own client id.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, mock, test } from 'node:test';
import { createAzureAdProvider } from '../../../src/credentials/azure-ad.ts';
import { AmbassadorError } from '../../../src/errors.ts';

const SCOPE = 'https://ossrdbms-aad.database.windows.net/.default';
const RESOURCE = 'https://ossrdbms-aad.database.windows.net';
const IDENTITY_HEADER = 'fake-identity-header-5d1c';
const LOGIN = { host: 'pg.postgres.database.azure.com', port: 5432, user: 'app' };

interface TokenRequest {
  path: string;
  apiVersion: string | null;
  resource: string | null;
  clientId: string | null;
  identityHeader: string | undefined;
}

/** What the fake endpoint hands out next: a token and its lifetime (expires_on = now + lifetime). */
const issue = { token: 'eyJ.fake.one', lifetimeS: 3600, status: 200 };
const requests: TokenRequest[] = [];
let lastExpiresOn = 0;
let server: http.Server;
let emptyDir: string;
const saved = { ...process.env };

before(async () => {
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://identity');
    requests.push({
      path: url.pathname,
      apiVersion: url.searchParams.get('api-version'),
      resource: url.searchParams.get('resource'),
      clientId: url.searchParams.get('client_id'),
      identityHeader: req.headers['x-identity-header'] as string | undefined,
    });
    res.setHeader('Content-Type', 'application/json');
    if (issue.status !== 200) {
      res.writeHead(issue.status);
      return res.end(JSON.stringify({ statusCode: issue.status, message: 'No managed identity found for the specified client id' }));
    }
    lastExpiresOn = Math.floor(Date.now() / 1000) + issue.lifetimeS;
    res.end(JSON.stringify({ access_token: issue.token, expires_on: String(lastExpiresOn), resource: RESOURCE, token_type: 'Bearer' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  emptyDir = mkdtempSync(path.join(os.tmpdir(), 'pa-azure-'));
  for (const name of Object.keys(process.env)) {
    if (/^(AZURE_|IDENTITY_|MSI_|IMDS_ENDPOINT$)/.test(name)) delete process.env[name];
  }
  process.env.IDENTITY_ENDPOINT = `http://127.0.0.1:${(server.address() as AddressInfo).port}/msi/token`;
  process.env.IDENTITY_HEADER = IDENTITY_HEADER;
  process.env.HOME = emptyDir;
  process.env.AZURE_CONFIG_DIR = emptyDir;
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
  Object.assign(process.env, saved);
  rmSync(emptyDir, { recursive: true, force: true });
});

afterEach(() => {
  mock.timers.reset();
  Object.assign(issue, { token: 'eyJ.fake.one', lifetimeS: 3600, status: 200 });
  requests.length = 0;
});

/**
 * expiresAt is the expires_on the endpoint sent. MSAL stores it as (its request time, whole seconds
 * rounded) + (expires_on - its response time), so it may come out up to a couple of seconds early.
 */
function assertExpiresOn(expiresAt: Date | undefined): void {
  const sent = lastExpiresOn * 1000;
  const got = expiresAt?.getTime() ?? 0;
  assert.ok(got <= sent && got >= sent - 2000, `expiresAt ${new Date(got).toISOString()} is expires_on ${new Date(sent).toISOString()} (or up to 2 s earlier)`);
}

describe('azure-ad provider', () => {
  test('the managed identity token is the password; expires_on sets expiresAt; the ossrdbms resource is asked for', async () => {
    const provider = await createAzureAdProvider({ scope: SCOPE, refreshMarginMs: 60_000 });
    assert.equal(provider.kind, 'azure-ad');
    assert.equal(provider.rotates, false);
    assert.equal(provider.token, true);
    assert.equal(provider.refreshMarginMs, 60_000);

    issue.lifetimeS = 1800;
    const secret = await provider.fetch(LOGIN);
    assert.equal(secret.password, 'eyJ.fake.one');
    assertExpiresOn(secret.expiresAt);
    assert.deepEqual(requests, [{ path: '/msi/token', apiVersion: '2019-08-01', resource: RESOURCE, clientId: null, identityHeader: IDENTITY_HEADER }]);
  });

  test('clientId selects a user-assigned identity; a token near expiry is replaced by the new one', async () => {
    const provider = await createAzureAdProvider({ clientId: 'pa-client-near-expiry', tenantId: 'pa-tenant', scope: SCOPE, refreshMarginMs: 60_000 });
    issue.lifetimeS = 90; // near expiry
    assert.equal((await provider.fetch(LOGIN)).password, 'eyJ.fake.one');
    Object.assign(issue, { token: 'eyJ.fake.two', lifetimeS: 3600 });
    const second = await provider.fetch(LOGIN);
    assert.equal(second.password, 'eyJ.fake.two');
    assertExpiresOn(second.expiresAt);
    assert.deepEqual(requests.map((r) => r.clientId), ['pa-client-near-expiry', 'pa-client-near-expiry']);
  });

  test('a long-lived token past its refreshOn and inside the margin is replaced on that same fetch', async () => {
    // MSAL sets refreshOn at half of a lifetime over 2 h; the call that passes it refreshes but
    // returns the old token. The provider asks again when the token is inside its margin.
    const start = Date.now();
    const provider = await createAzureAdProvider({ clientId: 'pa-client-refresh-on', scope: SCOPE, refreshMarginMs: 90 * 60_000 });
    issue.lifetimeS = 3 * 3600;
    assert.equal((await provider.fetch(LOGIN)).password, 'eyJ.fake.one');
    mock.timers.enable({ apis: ['Date'], now: start + 2 * 3600_000 }); // 1 h left: past refreshOn, inside the 90 min margin
    issue.token = 'eyJ.fake.two';
    const second = await provider.fetch(LOGIN);
    assert.equal(second.password, 'eyJ.fake.two');
    assertExpiresOn(second.expiresAt);
  });

  test('a token outside the margin is not fetched again (MSAL\'s cache answers)', async () => {
    const provider = await createAzureAdProvider({ clientId: 'pa-client-cached', scope: SCOPE, refreshMarginMs: 60_000 });
    const first = await provider.fetch(LOGIN);
    issue.token = 'eyJ.fake.two';
    const second = await provider.fetch(LOGIN);
    assert.equal(second.password, first.password);
    assert.equal(requests.length, 1);
  });

  test('a refusal is an error naming the source and the managed identity, without secrets', async () => {
    const provider = await createAzureAdProvider({ clientId: 'pa-client-refused', scope: SCOPE, refreshMarginMs: 60_000 });
    issue.status = 400;
    const error = await provider.fetch(LOGIN).then(() => undefined, (err: unknown) => err);
    assert.ok(error instanceof AmbassadorError, `expected an AmbassadorError, got ${String(error)}`);
    assert.equal(error.code, 'CREDENTIALS_UNAVAILABLE');
    assert.match(error.message, /^Azure AD: DefaultAzureCredential got no token for https:\/\/ossrdbms-aad/);
    assert.match(error.message, /ManagedIdentityCredential/);
    assert.ok(!error.message.includes(IDENTITY_HEADER), 'no identity header in the message');
    assert.ok(requests.length >= 1, 'the managed identity endpoint was asked');
  });
});

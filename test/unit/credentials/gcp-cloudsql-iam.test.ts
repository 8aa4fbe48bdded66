// The GCP Cloud SQL IAM provider with the real google-auth-library, against a fake metadata server
// on 127.0.0.1 (GCE_METADATA_HOST; it answers with `Metadata-Flavor: Google` as the real one
// does). Nothing from the machine's own gcloud setup can take part: HOME and CLOUDSDK_CONFIG point
// at an empty directory and GOOGLE_APPLICATION_CREDENTIALS is unset.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { cloudSqlIamUser, createGcpCloudSqlIamProvider, SQLSERVICE_LOGIN_SCOPE } from '../../../src/credentials/gcp-cloudsql-iam.ts';
import { AmbassadorError } from '../../../src/errors.ts';

const LOGIN = { host: '10.1.2.3', port: 5432, user: 'svc@proj.iam.gserviceaccount.com' };
const TOKEN_PATH = '/computeMetadata/v1/instance/service-accounts/default/token';

interface TokenRequest {
  scopes: string | null;
  flavor: string | undefined;
}

/** What the fake metadata server hands out next; tests change it between fetches. */
const issue = { token: 'ya29.fake-token-one', expiresIn: 3600, status: 200 };
const tokenRequests: TokenRequest[] = [];
let server: http.Server;
let emptyDir: string;
const ENV_VARS = [
  'GCE_METADATA_HOST', 'GCE_METADATA_IP', 'METADATA_SERVER_DETECTION', 'GOOGLE_APPLICATION_CREDENTIALS', 'CLOUDSDK_CONFIG',
  'HOME', 'GOOGLE_CLOUD_PROJECT', 'GCLOUD_PROJECT', 'GOOGLE_CLOUD_QUOTA_PROJECT', 'DETECT_GCP_RETRIES',
];
const saved = Object.fromEntries(ENV_VARS.map((name) => [name, process.env[name]]));

before(async () => {
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://metadata');
    const reply = (status: number, body: string, type = 'application/json'): void => {
      res.writeHead(status, { 'Metadata-Flavor': 'Google', 'Content-Type': type });
      res.end(body);
    };
    if (req.headers['metadata-flavor'] !== 'Google') return reply(403, 'missing Metadata-Flavor header', 'text/plain');
    if (url.pathname === '/computeMetadata/v1/instance' || url.pathname === '/computeMetadata/v1/instance/') return reply(200, '{}');
    if (url.pathname === '/computeMetadata/v1/project/project-id') return reply(200, 'pa-test-project', 'text/plain');
    if (url.pathname === TOKEN_PATH) {
      tokenRequests.push({ scopes: url.searchParams.get('scopes'), flavor: req.headers['metadata-flavor'] as string | undefined });
      if (issue.status !== 200) return reply(issue.status, 'no scopes granted for this service account', 'text/plain');
      return reply(200, JSON.stringify({ access_token: issue.token, expires_in: issue.expiresIn, token_type: 'Bearer' }));
    }
    reply(404, 'not found', 'text/plain');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  emptyDir = mkdtempSync(path.join(os.tmpdir(), 'pa-gcp-'));
  for (const name of ENV_VARS) delete process.env[name];
  process.env.GCE_METADATA_HOST = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  process.env.METADATA_SERVER_DETECTION = 'ping-only'; // no BIOS probe: ask the (fake) server
  process.env.HOME = emptyDir;
  process.env.CLOUDSDK_CONFIG = emptyDir;
  process.env.GOOGLE_CLOUD_PROJECT = 'pa-test-project'; // else the library runs `gcloud config config-helper`
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  rmSync(emptyDir, { recursive: true, force: true });
});

beforeEach(() => {
  Object.assign(issue, { token: 'ya29.fake-token-one', expiresIn: 3600, status: 200 });
  tokenRequests.length = 0;
});

async function fetchError(promise: Promise<unknown>): Promise<AmbassadorError> {
  const error = await promise.then(() => undefined, (err: unknown) => err);
  assert.ok(error instanceof AmbassadorError, `expected an AmbassadorError, got ${String(error)}`);
  assert.equal(error.code, 'CREDENTIALS_UNAVAILABLE');
  return error;
}

describe('gcp-cloudsql-iam provider', () => {
  test('the metadata server\'s token is the password; its expires_in sets expiresAt', async () => {
    const provider = await createGcpCloudSqlIamProvider({ refreshMarginMs: 120_000 });
    assert.equal(provider.kind, 'gcp-cloudsql-iam');
    assert.equal(provider.rotates, false);
    assert.equal(provider.token, true);
    assert.equal(provider.refreshMarginMs, 120_000);

    issue.expiresIn = 1800;
    const before = Date.now();
    const secret = await provider.fetch(LOGIN);
    const afterFetch = Date.now();
    assert.equal(secret.password, 'ya29.fake-token-one');
    const expiresAt = secret.expiresAt?.getTime() ?? 0;
    assert.ok(expiresAt >= before + 1_800_000 && expiresAt <= afterFetch + 1_800_000, `expiresAt ${expiresAt} is about now + 1800 s`);
    assert.deepEqual(tokenRequests, [{ scopes: SQLSERVICE_LOGIN_SCOPE, flavor: 'Google' }], 'one token request, for the sqlservice.login scope');
  });

  test('a token near expiry is replaced by the server\'s new one', async () => {
    const provider = await createGcpCloudSqlIamProvider({ refreshMarginMs: 60_000 });
    issue.expiresIn = 30; // inside the refresh margin
    assert.equal((await provider.fetch(LOGIN)).password, 'ya29.fake-token-one');
    Object.assign(issue, { token: 'ya29.fake-token-two', expiresIn: 3600 });
    const second = await provider.fetch(LOGIN);
    assert.equal(second.password, 'ya29.fake-token-two');
    assert.ok((second.expiresAt?.getTime() ?? 0) > Date.now() + 3_000_000, 'the new token\'s expiry');
    assert.equal(tokenRequests.length, 2);
  });

  test('every fetch asks the source, even when the library\'s cached token is far from expiry', async () => {
    // The cache decides when to fetch (also after a rejected login); the library must not answer from its own cache.
    const provider = await createGcpCloudSqlIamProvider({ refreshMarginMs: 5 * 60_000 });
    issue.expiresIn = 600; // outside the library's default 5-minute eager refresh
    assert.equal((await provider.fetch(LOGIN)).password, 'ya29.fake-token-one');
    issue.token = 'ya29.fake-token-two';
    assert.equal((await provider.fetch(LOGIN)).password, 'ya29.fake-token-two');
  });

  test('a refusal from the metadata server is an error naming the source, without a token', async () => {
    const provider = await createGcpCloudSqlIamProvider({ refreshMarginMs: 60_000 });
    assert.equal((await provider.fetch(LOGIN)).password, 'ya29.fake-token-one');
    issue.status = 403;
    const error = await fetchError(provider.fetch(LOGIN));
    assert.match(error.message, /^GCP Cloud SQL IAM: could not get an access token/);
    assert.match(error.message, /Forbidden|403/);
    assert.ok(!error.message.includes('ya29.'), 'no token in the message');
  });

  test('no Application Default Credentials: the error says where they are looked for', async () => {
    process.env.METADATA_SERVER_DETECTION = 'none';
    try {
      const error = await fetchError((await createGcpCloudSqlIamProvider({ refreshMarginMs: 60_000 })).fetch(LOGIN));
      assert.match(error.message, /^GCP Cloud SQL IAM: no Application Default Credentials/);
      assert.match(error.message, /GOOGLE_APPLICATION_CREDENTIALS/);
      assert.equal(tokenRequests.length, 0);
    } finally {
      process.env.METADATA_SERVER_DETECTION = 'ping-only';
    }
  });

  test('loginUser: a service account email loses .gserviceaccount.com; other users stay', async () => {
    const provider = await createGcpCloudSqlIamProvider({ refreshMarginMs: 60_000 });
    assert.equal(provider.loginUser?.('svc@proj.iam.gserviceaccount.com'), 'svc@proj.iam');
    assert.equal(cloudSqlIamUser('123-compute@developer.gserviceaccount.com'), '123-compute@developer');
    assert.equal(cloudSqlIamUser('alice@example.com'), 'alice@example.com');
    assert.equal(cloudSqlIamUser('app'), 'app');
    assert.equal(cloudSqlIamUser('svc@proj.iam'), 'svc@proj.iam', 'already trimmed');
  });
});

// The AWS RDS IAM provider with the real SDK: fixed credentials reach it through the default
// chain's environment source, the clock is fixed, so the token is the documented presigned URL and
// its signature can be recomputed here (SigV4, independently of the SDK). Also: expiry (15 min, or
// sooner when the credentials' session ends), the region (option, env, RDS endpoint name), and
// errors that explain what to set without showing a secret.

import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { createAwsRdsIamProvider, regionOfRdsHost } from '../../../src/credentials/aws-rds-iam.ts';
import { AmbassadorError } from '../../../src/errors.ts';

const AKID = 'AKIDFAKEEXAMPLE00001';
const SECRET = 'fakeSecretKey/ForTests+Only0000000000000';
const SESSION = 'FakeSessionToken//for+tests==';
const NOW = Date.UTC(2024, 4, 6, 7, 8, 9); // 2024-05-06T07:08:09Z, a whole second
const AMZ_DATE = '20240506T070809Z';
const LOGIN = { host: 'orders.c9akciq32.eu-west-1.rds.amazonaws.com', port: 5432, user: 'app_iam' };

/** Every variable the default chain looks at, so a developer's own AWS setup cannot leak in. */
const AWS_VARS = [
  'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_CREDENTIAL_EXPIRATION', 'AWS_CREDENTIAL_SCOPE',
  'AWS_ACCOUNT_ID', 'AWS_PROFILE', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE',
  'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_ROLE_ARN', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_EC2_METADATA_DISABLED',
];
let saved: Record<string, string | undefined>;
let emptyDir: string;

beforeEach(() => {
  saved = Object.fromEntries(AWS_VARS.map((name) => [name, process.env[name]]));
  for (const name of AWS_VARS) delete process.env[name];
  emptyDir = mkdtempSync(path.join(os.tmpdir(), 'pa-aws-'));
  process.env.AWS_CONFIG_FILE = path.join(emptyDir, 'config');
  process.env.AWS_SHARED_CREDENTIALS_FILE = path.join(emptyDir, 'credentials');
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  process.env.AWS_ACCESS_KEY_ID = AKID;
  process.env.AWS_SECRET_ACCESS_KEY = SECRET;
  mock.timers.enable({ apis: ['Date'], now: NOW });
});

afterEach(() => {
  mock.timers.reset();
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  rmSync(emptyDir, { recursive: true, force: true });
});

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** SigV4 query-string signature of an RDS connect URL, computed from the spec, not the SDK. */
function expectedSignature(token: string, region: string, secret: string): string {
  const [hostPort, query] = token.split('/?') as [string, string];
  const params = query.split('&').filter((pair) => !pair.startsWith('X-Amz-Signature='));
  const canonicalQuery = params.sort().join('&');
  const emptyHash = createHash('sha256').update('').digest('hex');
  const canonicalRequest = ['GET', '/', canonicalQuery, `host:${hostPort}`, '', 'host', emptyHash].join('\n');
  const day = AMZ_DATE.slice(0, 8);
  const scope = `${day}/${region}/rds-db/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', AMZ_DATE, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), 'rds-db'), 'aws4_request');
  return createHmac('sha256', key).update(toSign).digest('hex');
}

function param(token: string, name: string): string | undefined {
  return new URLSearchParams(token.split('/?')[1]).get(name) ?? undefined;
}

async function fetchError(promise: Promise<unknown>): Promise<AmbassadorError> {
  const error = await promise.then(() => undefined, (err: unknown) => err);
  assert.ok(error instanceof AmbassadorError, `expected an AmbassadorError, got ${String(error)}`);
  assert.equal(error.code, 'CREDENTIALS_UNAVAILABLE');
  return error;
}

describe('aws-rds-iam provider', () => {
  test('signs the documented presigned connect URL, deterministically, valid 15 minutes', async () => {
    const provider = await createAwsRdsIamProvider({ region: 'eu-west-1', refreshMarginMs: 60_000 });
    assert.equal(provider.kind, 'aws-rds-iam');
    assert.equal(provider.rotates, false);
    assert.equal(provider.token, true);
    assert.equal(provider.refreshMarginMs, 60_000);

    const secret = await provider.fetch(LOGIN);
    const token = secret.password;
    assert.ok(token.startsWith(`${LOGIN.host}:5432/?Action=connect&DBUser=app_iam&`), token);
    assert.match(token, /[?&]X-Amz-Algorithm=AWS4-HMAC-SHA256(&|$)/);
    assert.match(token, new RegExp(`[?&]X-Amz-Credential=${AKID}%2F20240506%2Feu-west-1%2Frds-db%2Faws4_request(&|$)`));
    assert.match(token, new RegExp(`[?&]X-Amz-Date=${AMZ_DATE}(&|$)`));
    assert.match(token, /[?&]X-Amz-Expires=900(&|$)/);
    assert.match(token, /[?&]X-Amz-SignedHeaders=host(&|$)/);
    assert.match(token, /[?&]X-Amz-Signature=[0-9a-f]{64}(&|$)/);
    assert.equal(param(token, 'X-Amz-Signature'), expectedSignature(token, 'eu-west-1', SECRET), 'signed with the chain\'s secret key');
    assert.equal(param(token, 'X-Amz-Security-Token'), undefined, 'no session token without AWS_SESSION_TOKEN');
    assert.equal(secret.expiresAt?.getTime(), NOW + 15 * 60_000);

    const again = await (await createAwsRdsIamProvider({ region: 'eu-west-1', refreshMarginMs: 60_000 })).fetch(LOGIN);
    assert.equal(again.password, token, 'same credentials, clock and target give the same token');

    mock.timers.setTime(NOW + 999);
    const sameSecond = await provider.fetch(LOGIN);
    assert.equal(param(sameSecond.password, 'X-Amz-Date'), AMZ_DATE);
    assert.equal(sameSecond.expiresAt?.getTime(), NOW + 15 * 60_000, 'the lifetime counts from X-Amz-Date (whole seconds)');
  });

  test('a session token is part of the signed URL', async () => {
    process.env.AWS_SESSION_TOKEN = SESSION;
    const { password } = await (await createAwsRdsIamProvider({ region: 'eu-west-1', refreshMarginMs: 0 })).fetch(LOGIN);
    assert.equal(param(password, 'X-Amz-Security-Token'), SESSION);
    assert.equal(param(password, 'X-Amz-Signature'), expectedSignature(password, 'eu-west-1', SECRET));
  });

  test('host, port and user options override the login; loginUser follows the signed user', async () => {
    const provider = await createAwsRdsIamProvider({ region: 'us-east-2', host: 'proxy.example.internal', port: 6432, user: 'iam_user', refreshMarginMs: 0 });
    const { password } = await provider.fetch(LOGIN);
    assert.ok(password.startsWith('proxy.example.internal:6432/?Action=connect&DBUser=iam_user&'), password);
    assert.equal(provider.loginUser?.('someone_else'), 'iam_user');
    const plain = await createAwsRdsIamProvider({ region: 'us-east-2', refreshMarginMs: 0 });
    assert.equal(plain.loginUser?.('someone_else'), 'someone_else');
  });

  test('credentials whose session ends within 15 minutes cut the token short', async () => {
    const sessionEnd = NOW + 7 * 60_000;
    process.env.AWS_SESSION_TOKEN = SESSION;
    process.env.AWS_CREDENTIAL_EXPIRATION = new Date(sessionEnd).toISOString();
    const secret = await (await createAwsRdsIamProvider({ region: 'eu-west-1', refreshMarginMs: 0 })).fetch(LOGIN);
    assert.equal(secret.expiresAt?.getTime(), sessionEnd);

    process.env.AWS_CREDENTIAL_EXPIRATION = new Date(NOW + 60 * 60_000).toISOString();
    const later = await (await createAwsRdsIamProvider({ region: 'eu-west-1', refreshMarginMs: 0 })).fetch(LOGIN);
    assert.equal(later.expiresAt?.getTime(), NOW + 15 * 60_000, 'a longer session leaves the 15 minutes');
  });

  test('region: option, then AWS_REGION, then AWS_DEFAULT_REGION, then the RDS endpoint name', async () => {
    const regionOf = async (options: { region?: string; env?: NodeJS.ProcessEnv }, host = LOGIN.host): Promise<string | undefined> => {
      const { password } = await (await createAwsRdsIamProvider({ ...options, refreshMarginMs: 0 })).fetch({ ...LOGIN, host });
      return decodeURIComponent(param(password, 'X-Amz-Credential') ?? '').split('/')[2];
    };
    assert.equal(await regionOf({ region: 'ap-south-1', env: { AWS_REGION: 'us-west-2' } }), 'ap-south-1');
    assert.equal(await regionOf({ env: { AWS_REGION: 'us-west-2', AWS_DEFAULT_REGION: 'us-east-1' } }), 'us-west-2');
    assert.equal(await regionOf({ env: { AWS_DEFAULT_REGION: 'us-east-1' } }), 'us-east-1');
    assert.equal(await regionOf({ env: {} }), 'eu-west-1');
    assert.equal(await regionOf({ env: {} }, 'reports.cluster-ro-abc.cn-north-1.rds.amazonaws.com.cn'), 'cn-north-1');
    process.env.AWS_REGION = 'sa-east-1';
    assert.equal(await regionOf({}, 'localhost'), 'sa-east-1', 'env defaults to process.env');

    assert.equal(regionOfRdsHost('mydb.cluster-xyz.us-gov-west-1.rds.amazonaws.com'), 'us-gov-west-1');
    assert.equal(regionOfRdsHost('myproxy.proxy-abc123.eu-central-1.rds.amazonaws.com'), 'eu-central-1');
    assert.equal(regionOfRdsHost('db.example.com'), undefined);
    assert.equal(regionOfRdsHost('eu-west-1.rds.amazonaws.com'), undefined);
  });

  test('no region anywhere: a clear error naming upstream.credentials.region', async () => {
    const provider = await createAwsRdsIamProvider({ refreshMarginMs: 0, env: {} });
    const error = await fetchError(provider.fetch({ ...LOGIN, host: 'db.internal.example' }));
    assert.match(error.message, /upstream\.credentials\.region/);
    assert.match(error.message, /db\.internal\.example/);
    assert.ok(!error.message.includes(SECRET) && !error.message.includes(AKID));
  });

  test('no credentials anywhere in the chain: the error says so, without secrets', async () => {
    delete process.env.AWS_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = SECRET; // half a pair is not credentials, and must not be echoed
    const provider = await createAwsRdsIamProvider({ region: 'eu-west-1', refreshMarginMs: 0 });
    const error = await fetchError(provider.fetch(LOGIN));
    assert.match(error.message, /^AWS RDS IAM: the default AWS credential chain found no credentials: \S/);
    assert.ok(!error.message.includes(SECRET));
  });
});

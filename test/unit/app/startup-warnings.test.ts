// The open doors logged at start: trust beyond loopback, an admin endpoint beyond loopback with
// no token, the admin console under trust.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfigText } from '../../../src/config/index.ts';
import { isLoopbackHost, startupWarnings } from '../../../src/startup-warnings.ts';

const warnings = (yaml: string) => startupWarnings(parseConfigText(`upstream: { hosts: [{ host: db }] }\n${yaml}`)).map((w) => w.message.split(':')[0]);

test('loopback addresses', () => {
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.equal(isLoopbackHost(host), true, host);
  for (const host of ['0.0.0.0', '::', '10.0.0.5', 'db.internal', '127.example.com']) assert.equal(isLoopbackHost(host), false, host);
});

test('the defaults (loopback, trust) warn about nothing', () => {
  assert.deepEqual(warnings(''), []);
});

test('trust on all interfaces, and an admin endpoint there without a token, are each reported', () => {
  assert.deepEqual(warnings('listen: { host: 0.0.0.0 }\nadmin: { host: 0.0.0.0 }\n'), [
    'clientAuth.method trust on a non-loopback listen.host',
    'no admin.token on a non-loopback admin.host',
  ]);
  const guarded = 'listen: { host: 0.0.0.0 }\nadmin: { host: 0.0.0.0, token: s3cret }\nclientAuth: { method: scram-sha-256, users: [{ name: app, password: pw }] }\n';
  assert.deepEqual(warnings(guarded), []);
  assert.deepEqual(warnings('admin: { users: [ops] }\n'), ['admin.users with clientAuth.method trust']);
});

// Redaction: no secret survives redactConfig or formatConfig; everything else does, and the
// formatted YAML loads back to the same config.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatConfig, parseConfigText, redactConfig } from '../../../src/config/index.ts';

const VERIFIER = `SCRAM-SHA-256$4096:c2FsdHk=$${Buffer.alloc(32, 3).toString('base64')}:${Buffer.alloc(32, 4).toString('base64')}`;
const SECRETS = ['upstream-pw-Zq81', 'client-pw-Kx77', VERIFIER, 'admin-token-Pp42'];

const TEXT = `
clientAuth:
  method: scram-sha-256
  users:
    - { name: alice, password: client-pw-Kx77 }
    - { name: bob, password: "${VERIFIER}" }
upstream:
  hosts: [{ host: db }]
  user: app
  credentials: { type: password, password: upstream-pw-Zq81 }
admin:
  token: admin-token-Pp42
`;

test('formatConfig shows no secret anywhere', () => {
  const config = parseConfigText(TEXT, { env: {} });
  const text = formatConfig(config);
  for (const secret of SECRETS) {
    assert.ok(!text.includes(secret), `secret ${secret} leaked`);
    // also not any long piece of it (e.g. the StoredKey of a verifier)
    assert.ok(!text.includes(secret.slice(-20)), `part of ${secret} leaked`);
  }
  assert.match(text, /password: "\[redacted\]"/);
  assert.match(text, /token: "\[redacted\]"/);
  assert.match(text, /name: alice/);
  assert.match(text, /user: app/);
});

test('redactConfig replaces every secret and copies the rest', () => {
  const config = parseConfigText(TEXT, { env: {} });
  const redacted = redactConfig(config) as typeof config;
  assert.equal(redacted.upstream.credentials?.type, 'password');
  assert.deepEqual(redacted.upstream.credentials, { type: 'password', password: '[redacted]' });
  assert.deepEqual(redacted.clientAuth.users, [
    { name: 'alice', password: '[redacted]' },
    { name: 'bob', password: '[redacted]' },
  ]);
  assert.equal(redacted.admin.token, '[redacted]');
  assert.equal(redacted.upstream.hosts[0]?.host, 'db');
  assert.ok(!Object.isFrozen(redacted));
  // the original is untouched
  assert.equal(config.admin.token, 'admin-token-Pp42');
  assert.ok(!JSON.stringify(redacted).includes('Kx77'));
});

test('any key named like a secret is redacted, at any depth', () => {
  const redacted = redactConfig({ a: { clientSecret: 'x1', nested: [{ apiToken: 'x2', PASSWORD: 'x3', keep: 'ok' }] } });
  assert.deepEqual(redacted, { a: { clientSecret: '[redacted]', nested: [{ apiToken: '[redacted]', PASSWORD: '[redacted]', keep: 'ok' }] } });
});

test('formatConfig output loads back to the same config', () => {
  const config = parseConfigText(
    'upstream:\n  hosts: [{ host: db, role: replica, weight: 3 }]\n  credentials: { type: exec, command: [cat, /pw], timeout: 2s }\n' +
      'routing:\n  maxReplicaLag: 16MB\npool:\n  idleTimeout: 90s\n',
    { env: {} },
  );
  const again = parseConfigText(formatConfig(config), { env: {} });
  assert.deepEqual(again, config);
  const timeLag = parseConfigText('upstream:\n  hosts: [{ host: db }]\n', { env: {} });
  assert.deepEqual(parseConfigText(formatConfig(timeLag), { env: {} }), timeLag);
});

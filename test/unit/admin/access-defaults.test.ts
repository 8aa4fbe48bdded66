// The admin surfaces are closed by default: the HTTP endpoint binds loopback, the SQL console is
// off (no admin.users), and an admin endpoint moved off loopback without a token is a startup
// warning that names what is then open (including /config), however the address is written.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULTS } from '../../../src/config/defaults.ts';
import { parseConfigText } from '../../../src/config/index.ts';
import { isLoopbackHost, startupWarnings } from '../../../src/startup-warnings.ts';
import { TEST_SECRETS } from '../../support/secrets.ts';

const config = (yaml: string) => parseConfigText(`upstream: { hosts: [{ host: db }] }\n${yaml}`, { env: {} });
const adminWarnings = (yaml: string) => startupWarnings(config(yaml)).filter((w) => w.message.startsWith('no admin.token'));

test('by default the admin endpoint and the listener bind loopback, with no token and no console users', () => {
  assert.equal(DEFAULTS.admin.host, '127.0.0.1');
  const defaults = config('');
  assert.equal(defaults.admin.host, '127.0.0.1');
  assert.equal(defaults.listen.host, '127.0.0.1');
  assert.equal(defaults.admin.token, undefined);
  assert.deepEqual(defaults.admin.users, []);
  assert.deepEqual(startupWarnings(defaults), []);
});

test('a non-loopback admin.host without a token warns that POSTs and /config are open to the network', () => {
  for (const host of ['0.0.0.0', '::', '10.1.2.3', 'ambassador.internal', '::ffff:10.0.0.1']) {
    const [warning, ...more] = adminWarnings(`admin: { host: "${host}" }\n`);
    assert.ok(warning, `a warning for ${host}`);
    assert.deepEqual(more, []);
    assert.deepEqual(warning.fields, { admin: host });
    assert.match(warning.message, /POST \/reload and \/quitquitquit and read \/config; set admin\.token/);
  }
});

test('a token, or any way of writing loopback, silences it', () => {
  assert.deepEqual(adminWarnings(`admin: { host: 0.0.0.0, token: ${TEST_SECRETS.adminToken} }\n`), []);
  for (const host of ['127.0.0.1', '127.0.0.2', '::1', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) {
    assert.equal(isLoopbackHost(host), true, host);
    assert.deepEqual(adminWarnings(`admin: { host: "${host}" }\n`), [], host);
  }
});

test('the warning never carries the token or any other secret', () => {
  const yaml = `listen: { host: 0.0.0.0 }\nadmin: { host: 0.0.0.0, users: [ops] }\nclientAuth: { method: trust }\nupstream: { hosts: [{ host: db }], credentials: { type: password, password: ${TEST_SECRETS.wrongPassword} } }\n`;
  const text = JSON.stringify(startupWarnings(parseConfigText(yaml, { env: {} })));
  assert.ok(!text.includes(TEST_SECRETS.wrongPassword));
  assert.match(text, /no admin\.token/);
});

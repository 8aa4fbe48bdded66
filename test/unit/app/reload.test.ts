// What a reload compares and reports: changed keys leaf by leaf (a host list, a credentials block
// or a user list counts as one key), which keys need a restart, and how SHOW CONFIG prints values.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changedKeys, formatConfigValue, restartRequired } from '../../../src/app-reload.ts';
import { parseConfigText } from '../../../src/config/index.ts';

const base = `
listen: { port: 6432 }
upstream:
  hosts: [ { host: db1 }, { host: db2 } ]
  credentials: { type: password, password: one }
pool: { size: 10 }
`;

const parse = (text: string) => parseConfigText(text, { env: {} });

test('the same config changes nothing', () => {
  assert.deepEqual(changedKeys(parse(base), parse(base)), []);
});

test('leaves that differ are listed; a host list and a credentials block count as one key each', () => {
  const next = base
    .replace('size: 10', 'size: 12')
    .replace('{ host: db2 }', '{ host: db2, weight: 3 }')
    .replace('password: one', 'password: two')
    .replace('port: 6432', 'port: 6433');
  assert.deepEqual(changedKeys(parse(base), parse(next)), ['listen.port', 'pool.size', 'upstream.credentials', 'upstream.hosts']);
});

test('listen and admin addresses, pool.mode and logging.format need a restart; the rest does not', () => {
  for (const key of ['listen.port', 'listen.host', 'admin.port', 'admin.host', 'pool.mode', 'logging.format']) assert.equal(restartRequired(key), true, key);
  for (const key of ['pool.size', 'listen.maxClientConnections', 'listen.tls.cert', 'logging.level', 'upstream.hosts', 'admin.token']) {
    assert.equal(restartRequired(key), false, key);
  }
});

test('SHOW CONFIG values: lag bounds with their unit, lists joined, absent as empty', () => {
  assert.equal(formatConfigValue({ ms: 10_000 }), '10000ms');
  assert.equal(formatConfigValue({ bytes: 1024 }), '1024B');
  assert.equal(formatConfigValue(['a', 'b']), 'a, b');
  assert.equal(formatConfigValue([{ host: 'db1', port: 5432 }]), '{"host":"db1","port":5432}');
  assert.equal(formatConfigValue(undefined), '');
  assert.equal(formatConfigValue(false), 'false');
});

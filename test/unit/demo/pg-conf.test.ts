import assert from 'node:assert/strict';
import { test } from 'node:test';

import { primaryConf } from '../../../src/demo/pg-conf.ts';

const certs = { caCert: '/c/ca.crt', serverCert: '/c/server.crt', serverKey: '/c/server.key' } as Parameters<typeof primaryConf>[0]['certs'];

test("the primary's extra settings come after the defaults, so they win", () => {
  const conf = primaryConf({ port: 5999, socketDir: '/tmp/s', certs, ssl: false, extra: { max_connections: '900' } });
  const lines = conf.split('\n').filter((line) => line.startsWith('max_connections'));
  assert.equal(lines.length, 2);
  assert.match(lines.at(-1)!, /^max_connections = '?900'?$/);
  assert.doesNotMatch(primaryConf({ port: 5999, socketDir: '/tmp/s', certs, ssl: false }), /900/);
});

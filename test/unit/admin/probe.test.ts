// `pg-ambassador probe`: which address reaches the admin server, and what counts as healthy.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { probe, probeHost, probeUrl } from '../../../src/admin/probe.ts';

test('a wildcard bind is probed on loopback; IPv6 literals are bracketed', () => {
  assert.equal(probeHost('0.0.0.0'), '127.0.0.1');
  assert.equal(probeHost('::'), '[::1]');
  assert.equal(probeHost('::1'), '[::1]');
  assert.equal(probeHost('10.1.2.3'), '10.1.2.3');
  assert.equal(probeHost('localhost'), 'localhost');
  assert.equal(probeUrl({ admin: { host: '0.0.0.0', port: 9187 } } as never, 'readyz'), 'http://127.0.0.1:9187/readyz');
});

test('healthy only on 200; the answer or the failure is summarized', async () => {
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === '/livez' ? 200 : 503).end(req.url === '/livez' ? 'ok\n' : 'no primary\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const config = { admin: { host: '127.0.0.1', port } } as never;
  try {
    assert.deepEqual(await probe(config, 'livez', 2000), { ok: true, summary: '200 /livez: ok' });
    assert.deepEqual(await probe(config, 'readyz', 2000), { ok: false, summary: '503 /readyz: no primary' });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  // A port nothing listens on (fetch's pool keeps no connection to it).
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const unused = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const refused = await probe({ admin: { host: '127.0.0.1', port: unused } } as never, 'livez', 2000);
  assert.equal(refused.ok, false);
  assert.match(refused.summary, /^no answer from http:\/\/127\.0\.0\.1:\d+\/livez \(ECONNREFUSED\)$/);
});

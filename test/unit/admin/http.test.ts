// The admin HTTP endpoint over real loopback HTTP: /livez, POST /reload calling the reload it was
// given and answering with its report, the bearer token on POST endpoints (compared without
// leaking it), wrong methods and unknown paths, and a reload that throws.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { startAdminServer, type AdminServer, type AdminServerOptions } from '../../../src/admin/http.ts';

const log = pino({ level: 'silent' });
const quits: string[] = [];
const stubs: AdminServerOptions = {
  host: '127.0.0.1',
  port: 0,
  token: () => undefined,
  reload: async () => ({}),
  metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'pg_ambassador_paused 0\n' }),
  ready: async () => ({ ready: false, reason: 'no primary known' }),
  started: () => true,
  config: () => ({ admin: { token: '[redacted]' } }),
  quit: (reason) => quits.push(reason),
  log,
};

async function withAdmin(
  options: { token?: string; reload?: (reason: string) => Promise<unknown> },
  fn: (url: string, server: AdminServer) => Promise<void>,
): Promise<void> {
  const server = await startAdminServer({ ...stubs, token: () => options.token, reload: options.reload ?? stubs.reload });
  try {
    await fn(`http://127.0.0.1:${server.address.port}`, server);
  } finally {
    await server.close();
  }
}

test('GET /livez answers ok; POST /reload runs the reload and returns its report', async () => {
  const reasons: string[] = [];
  const reload = async (reason: string) => {
    reasons.push(reason);
    return { credentials: { refreshed: 2, failed: 0 }, tls: { upstream: false, listen: true } };
  };
  await withAdmin({ reload }, async (url) => {
    const live = await fetch(`${url}/livez`);
    assert.equal(live.status, 200);
    assert.equal(await live.text(), 'ok\n');
    const res = await fetch(`${url}/reload`, { method: 'POST' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { credentials: { refreshed: 2, failed: 0 }, tls: { upstream: false, listen: true } });
    assert.deepEqual(reasons, ['POST /reload']);
  });
});

test('with admin.token, POST needs the bearer token; GET does not', async () => {
  let reloads = 0;
  await withAdmin({ token: 's3cret-admin-token', reload: async () => ++reloads }, async (url) => {
    const none = await fetch(`${url}/reload`, { method: 'POST' });
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.ok(!(await none.text()).includes('s3cret-admin-token'));
    const wrong = await fetch(`${url}/reload`, { method: 'POST', headers: { authorization: 'Bearer s3cret-admin-tokeN' } });
    assert.equal(wrong.status, 401);
    const basic = await fetch(`${url}/reload`, { method: 'POST', headers: { authorization: 'Basic czNjcmV0' } });
    assert.equal(basic.status, 401);
    assert.equal(reloads, 0, 'no reload without the token');
    const right = await fetch(`${url}/reload`, { method: 'POST', headers: { authorization: 'Bearer s3cret-admin-token' } });
    assert.equal(right.status, 200);
    assert.equal(reloads, 1);
    assert.equal((await fetch(`${url}/livez`)).status, 200);
  });
});

test('a POST carrying an Origin header (a browser page) is refused, token or not', async () => {
  let reloads = 0;
  await withAdmin({ reload: async () => ++reloads }, async (url) => {
    const res = await fetch(`${url}/reload`, { method: 'POST', headers: { origin: 'https://evil.example' } });
    assert.equal(res.status, 403);
    assert.equal(reloads, 0);
  });
});

test('wrong method is 405 naming the right one; unknown path is 404; a failing reload is 500', async () => {
  await withAdmin({ reload: async () => Promise.reject(new Error('boom')) }, async (url) => {
    const get = await fetch(`${url}/reload`);
    assert.equal(get.status, 405);
    assert.match(((await get.json()) as { error: string }).error, /use POST for \/reload/);
    const missing = await fetch(`${url}/nope`);
    assert.equal(missing.status, 404);
    const failed = await fetch(`${url}/reload`, { method: 'POST' });
    assert.equal(failed.status, 500);
    assert.equal((await fetch(`${url}/livez`)).status, 200, 'still serving');
  });
});

test('a port in use is a clear start error', async () => {
  await withAdmin({}, async (_url, server) => {
    await assert.rejects(
      startAdminServer({ ...stubs, host: '127.0.0.1', port: server.address.port }),
      /cannot listen for admin requests on 127\.0\.0\.1:\d+: EADDRINUSE/,
    );
  });
});

test('GET /metrics, /readyz, /startupz and /config answer from their callbacks; POST /quitquitquit asks for a shutdown', async () => {
  await withAdmin({ token: 'admin-token-1' }, async (url) => {
    const metrics = await fetch(`${url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /text\/plain/);
    assert.equal(await metrics.text(), 'pg_ambassador_paused 0\n');
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(await ready.text(), 'no primary known\n');
    assert.equal((await fetch(`${url}/startupz`)).status, 200);
    assert.deepEqual(await (await fetch(`${url}/config`)).json(), { admin: { token: '[redacted]' } });
    const before = quits.length;
    assert.equal((await fetch(`${url}/quitquitquit`, { method: 'POST' })).status, 401);
    assert.equal(quits.length, before);
    const quit = await fetch(`${url}/quitquitquit`, { method: 'POST', headers: { authorization: 'Bearer admin-token-1' } });
    assert.equal(quit.status, 200);
    assert.deepEqual(quits.slice(before), ['POST /quitquitquit']);
  });
});

// The admin HTTP endpoint over real loopback HTTP: /livez, POST /reload calling the reload it was
// given and answering with its report, the bearer token on POST endpoints (compared without
// leaking it), wrong methods and unknown paths, and a reload that throws.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { startAdminServer, type AdminServer } from '../../../src/admin/http.ts';

const log = pino({ level: 'silent' });

async function withAdmin(
  options: { token?: string; reload?: (reason: string) => Promise<unknown> },
  fn: (url: string, server: AdminServer) => Promise<void>,
): Promise<void> {
  const server = await startAdminServer({ host: '127.0.0.1', port: 0, token: options.token, reload: options.reload ?? (async () => ({})), log });
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
      startAdminServer({ host: '127.0.0.1', port: server.address.port, token: undefined, reload: async () => ({}), log }),
      /cannot listen for admin requests on 127\.0\.0\.1:\d+: EADDRINUSE/,
    );
  });
});

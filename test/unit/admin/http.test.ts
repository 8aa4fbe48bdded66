// The admin HTTP endpoint over real loopback HTTP: /livez, POST /reload calling the reload it was
// given and answering with its report, the bearer token on POST endpoints and GET /config
// (compared without leaking it), browser pages kept out (Origin on POST, Host on a loopback
// bind), wrong methods and unknown paths, and a reload that throws.

import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { pino } from 'pino';
import { startAdminServer, type AdminServer, type AdminServerOptions } from '../../../src/admin/http.ts';
import { TEST_SECRETS } from '../../support/secrets.ts';

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

const TOKEN = TEST_SECRETS.adminToken;

test('with admin.token, POST needs the bearer token; the probes and /metrics do not', async () => {
  let reloads = 0;
  await withAdmin({ token: TOKEN, reload: async () => ++reloads }, async (url) => {
    const none = await fetch(`${url}/reload`, { method: 'POST' });
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.ok(!(await none.text()).includes(TOKEN));
    const wrong = await fetch(`${url}/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}X` } });
    assert.equal(wrong.status, 401);
    const basic = await fetch(`${url}/reload`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` } });
    assert.equal(basic.status, 401);
    assert.equal(reloads, 0, 'no reload without the token');
    const right = await fetch(`${url}/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(right.status, 200);
    assert.equal(reloads, 1);
    for (const open of ['/livez', '/readyz', '/startupz', '/metrics']) assert.notEqual((await fetch(`${url}${open}`)).status, 401, open);
  });
});

test('with admin.token, GET /config needs the token too; without one it is open', async () => {
  await withAdmin({ token: TOKEN }, async (url) => {
    const none = await fetch(`${url}/config`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.deepEqual(await none.json(), { error: 'this endpoint needs Authorization: Bearer <admin.token>' });
    assert.equal((await fetch(`${url}/config`, { headers: { authorization: 'Bearer nope' } })).status, 401);
    assert.equal((await fetch(`${url}/config?pretty=1`)).status, 401, 'a query string does not lift the guard');
    const right = await fetch(`${url}/config`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(right.status, 200);
    assert.deepEqual(await right.json(), { admin: { token: '[redacted]' } });
  });
  await withAdmin({}, async (url) => assert.equal((await fetch(`${url}/config`)).status, 200));
});

test('the token comparison: scheme case-insensitive, surrounding spaces ignored, any other difference refused', async () => {
  await withAdmin({ token: TOKEN }, async (url) => {
    const status = async (authorization: string) => (await fetch(`${url}/config`, { headers: { authorization } })).status;
    assert.equal(await status(`bearer ${TOKEN}`), 200);
    assert.equal(await status(`Bearer   ${TOKEN}  `), 200);
    for (const presented of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Bearer ${TOKEN.toUpperCase()}`, 'Bearer ', `Token ${TOKEN}`, TOKEN, `Bearer ${TOKEN}${TOKEN}`]) {
      assert.equal(await status(presented), 401, `refused: ${presented.length} characters`);
    }
  });
});

test('a configured token with surrounding whitespace (a Secret ending in a newline) still works; a blank one admits nobody', async () => {
  await withAdmin({ token: `${TOKEN}\n` }, async (url) => {
    assert.equal((await fetch(`${url}/config`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
  });
  await withAdmin({ token: '   ' }, async (url) => {
    for (const authorization of ['Bearer    ', 'Bearer  x', `Bearer ${TOKEN}`]) {
      assert.equal((await fetch(`${url}/config`, { headers: { authorization } })).status, 401);
    }
    assert.equal((await fetch(`${url}/config`)).status, 401);
  });
});

test('a path that only looks like a guarded one is no way around the token', async () => {
  await withAdmin({ token: TOKEN }, async (url) => {
    for (const path of ['/config/', '//config', '/CONFIG', '/%63onfig', '/config%00']) {
      const res = await fetch(`${url}${path}`);
      assert.equal(res.status, 404, path);
      assert.ok(!(await res.text()).includes('redacted'), `${path} serves nothing of the config`);
    }
  });
});

/** A GET with a Host header of our choosing (fetch sets its own). */
function getWithHost(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('bound to loopback, it answers only requests addressed to a loopback name (no DNS rebinding from a web page)', async () => {
  await withAdmin({}, async (_url, server) => {
    const { port } = server.address;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'localhost', `LOCALHOST:${port}`]) {
      assert.equal((await getWithHost(port, '/config', host)).status, 200, host);
    }
    for (const host of [`attacker.example:${port}`, 'attacker.example', `127.0.0.1.attacker.example:${port}`, `localhost.attacker.example`, '[::2]']) {
      const res = await getWithHost(port, '/config', host);
      assert.equal(res.status, 421, host);
      assert.doesNotMatch(res.body, /redacted/);
      assert.equal((await getWithHost(port, '/metrics', host)).status, 421, `${host} /metrics`);
    }
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
  await withAdmin({ token: TOKEN }, async (url) => {
    const metrics = await fetch(`${url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /text\/plain/);
    assert.equal(await metrics.text(), 'pg_ambassador_paused 0\n');
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(await ready.text(), 'no primary known\n');
    assert.equal((await fetch(`${url}/startupz`)).status, 200);
    assert.deepEqual(await (await fetch(`${url}/config`, { headers: { authorization: `Bearer ${TOKEN}` } })).json(), { admin: { token: '[redacted]' } });
    const before = quits.length;
    assert.equal((await fetch(`${url}/quitquitquit`, { method: 'POST' })).status, 401);
    assert.equal(quits.length, before);
    const quit = await fetch(`${url}/quitquitquit`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(quit.status, 200);
    assert.deepEqual(quits.slice(before), ['POST /quitquitquit']);
  });
});

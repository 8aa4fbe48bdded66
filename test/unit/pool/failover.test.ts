// What a failed connect means (failover.ts): which errors say "the host cannot be reached now"
// (breaker failure, choose again after a health round) and which ones the pool retries at all.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AmbassadorError } from '../../../src/errors.ts';
import { retryableConnectError, unreachable } from '../../../src/pool/failover.ts';
import { loginError } from './pooler-fakes.ts';

const errno = (code: string): Error => Object.assign(new Error(`connect ${code} 10.0.0.1:5432`), { code });

test('unreachable: network failures, timeouts, lost connections, an open breaker, a drained pool, a server starting or shutting down', () => {
  for (const code of ['UPSTREAM_CONNECT_FAILED', 'UPSTREAM_CONNECT_TIMEOUT', 'UPSTREAM_LOST', 'HOST_UNAVAILABLE', 'POOL_CLOSED'] as const) {
    assert.equal(unreachable(new AmbassadorError(code, 'x')), true, code);
  }
  for (const code of ['57P03', '57P01', '57P02']) assert.equal(unreachable(loginError(code)), true, code);
  assert.equal(unreachable(errno('ECONNREFUSED')), true);
  assert.equal(unreachable(errno('ETIMEDOUT')), true);
  const tlsReset = new AmbassadorError('UPSTREAM_TLS_FAILED', 'socket hang up', { cause: errno('ECONNRESET') });
  assert.equal(unreachable(tlsReset), true, 'a reset during the TLS handshake is the network');
});

test('reachable: the server answered and said no (auth, no such database, full), or the setup is wrong', () => {
  for (const code of ['28P01', '28000', '3D000', '53300', '42704']) assert.equal(unreachable(loginError(code)), false, code);
  for (const code of ['UPSTREAM_AUTH_FAILED', 'UPSTREAM_PROTOCOL', 'POOL_TIMEOUT', 'CREDENTIALS_UNAVAILABLE'] as const) {
    assert.equal(unreachable(new AmbassadorError(code, 'x')), false, code);
  }
  assert.equal(unreachable(new AmbassadorError('UPSTREAM_TLS_FAILED', 'self-signed certificate')), false);
  assert.equal(unreachable(new Error('something else')), false);
});

test('retryable: not a bad password, a missing database, an open breaker or a protocol error; yes to network failures and a full or starting server', () => {
  for (const code of ['28P01', '28000', '3D000', '42704']) assert.equal(retryableConnectError(loginError(code)), false, code);
  for (const code of ['57P03', '53300']) assert.equal(retryableConnectError(loginError(code)), true, code);
  for (const code of ['HOST_UNAVAILABLE', 'UPSTREAM_AUTH_FAILED', 'UPSTREAM_PROTOCOL'] as const) {
    assert.equal(retryableConnectError(new AmbassadorError(code, 'x')), false, code);
  }
  for (const code of ['UPSTREAM_CONNECT_FAILED', 'UPSTREAM_CONNECT_TIMEOUT', 'CREDENTIALS_UNAVAILABLE'] as const) {
    assert.equal(retryableConnectError(new AmbassadorError(code, 'x')), true, code);
  }
  assert.equal(retryableConnectError(new AmbassadorError('UPSTREAM_TLS_FAILED', 'bad certificate')), false);
  assert.equal(retryableConnectError(new Error('unknown')), true, 'unknown errors keep the old behaviour');
});

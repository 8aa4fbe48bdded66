// Shared checks for hostile-client tests: after each piece of bad input, a normal `pg` client
// must still be served; and a refused client must get the expected SQLSTATE (or a bare close)
// followed by the end of its connection, without ever having been told AuthenticationOk.

import assert from 'node:assert/strict';
import pg from 'pg';
import { CLIENT_PASSWORD, viaAmbassador } from './ambassador.ts';
import type { ErrorOrClose, RawClient } from './raw-client.ts';

/** A normal pg client logs in through the ambassador and runs `select 1`. */
export async function assertStillServes(port: number, login: { user?: string; password?: string } = {}): Promise<void> {
  const client = new pg.Client({
    ...viaAmbassador(port, { user: login.user ?? 'app', password: login.password ?? CLIENT_PASSWORD }),
    connectionTimeoutMillis: 10_000,
    query_timeout: 10_000,
  });
  client.on('error', () => {}); // a late socket error must not crash the test process
  try {
    await client.connect();
    const result = await client.query('select 1 as one');
    assert.deepEqual(result.rows, [{ one: 1 }], 'the ambassador no longer serves a normal client');
  } finally {
    await client.end().catch(() => {});
  }
}

export interface RefusalOptions {
  /** Whether a close without an ErrorResponse is acceptable (default false). */
  allowBareClose?: boolean;
  /** Deadline for the ErrorResponse or close (default 5 s). */
  timeoutMs?: number;
  /** A pattern the error message must match. */
  message?: RegExp;
  /** The client had logged in before misbehaving (skips the no-AuthenticationOk check). */
  afterLogin?: boolean;
}

/**
 * Asserts the client is refused: an ErrorResponse with one of `codes` (or, when allowed, a close
 * without one), then the connection ends. Unless `afterLogin`, fails if AuthenticationOk was
 * ever received.
 */
export async function expectRefused(client: RawClient, codes: readonly string[], options: RefusalOptions = {}): Promise<ErrorOrClose> {
  try {
    const reply = await client.expectErrorOrClose(options.timeoutMs ?? 5_000);
    if (reply.kind === 'error') {
      assert.ok(codes.includes(reply.code), `expected SQLSTATE ${codes.join(' or ')}, got ${reply.code}: ${reply.message}`);
      if (options.message) assert.match(reply.message, options.message);
    } else {
      assert.ok(options.allowBareClose, `expected an ErrorResponse (${codes.join(' or ')}), the connection was closed without one`);
    }
    await client.waitForClose(5_000);
    if (!options.afterLogin) {
      const authOk = client.history.some((m) => m.type === 'R' && m.payload.length >= 4 && m.payload.readInt32BE(0) === 0);
      assert.ok(!authOk, 'a refused client was sent AuthenticationOk');
    }
    return reply;
  } finally {
    client.destroy();
  }
}

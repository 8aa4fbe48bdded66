// The memory bench's arithmetic and its idle client's login: SCRAM-SHA-256 against the project's
// ScramServer, with the server's bytes split at every offset, wrong passwords, server errors and
// trust.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdleLogin } from '../../../bench/idle-login.ts';
import { bytesPerIdleClient, shares } from '../../../bench/memory.ts';
import {
  encodeAuthenticationOk, encodeAuthenticationSASL, encodeAuthenticationSASLContinue, encodeAuthenticationSASLFinal, encodeBackendKeyData,
  encodeErrorResponse, encodeParameterStatus, encodeReadyForQuery,
} from '../../../src/protocol/backend.ts';
import { decodeSASLInitialResponse } from '../../../src/protocol/frontend.ts';
import { buildScramVerifier, ScramServer, SCRAM_SHA_256, type ScramVerifier } from '../../../src/protocol/scram.ts';
import { decodeStartupPacket } from '../../../src/protocol/startup.ts';

test('RSS per idle client: growth over the clients still connected', () => {
  assert.equal(bytesPerIdleClient(80 * 2 ** 20, 80 * 2 ** 20 + 10_000 * 12_288, 10_000), 12_288);
  assert.equal(bytesPerIdleClient(100, 90, 10), -1, 'a shrinking RSS is reported as it is');
  assert.equal(bytesPerIdleClient(null, 200, 10), null);
  assert.equal(bytesPerIdleClient(100, null, 10), null);
  assert.equal(bytesPerIdleClient(100, 200, 0), null);
});

test('clients spread over the processes as evenly as possible', () => {
  assert.deepEqual(shares(10_000, 2), [5000, 5000]);
  assert.deepEqual(shares(10_001, 2), [5001, 5000]);
  assert.deepEqual(shares(7, 3), [3, 2, 2]);
  assert.deepEqual(shares(1, 2), [1]);
});

const VERIFIER: ScramVerifier = buildScramVerifier('right-password', { iterations: 64 });

/** The body of a typed message (after type and length). */
function body(message: Buffer): Buffer {
  return message.subarray(5);
}

/** Plays PostgreSQL's side of a SCRAM login; returns the server's bytes for each client flight. */
function scramServer(verifier: ScramVerifier) {
  const server = new ScramServer({ verifier });
  return {
    onStartup: () => encodeAuthenticationSASL([SCRAM_SHA_256]),
    onInitial: (message: Buffer) => encodeAuthenticationSASLContinue(server.handleClientFirst(decodeSASLInitialResponse(body(message)).data)),
    onFinal: (message: Buffer): Buffer =>
      Buffer.concat([
        encodeAuthenticationSASLFinal(server.handleClientFinal(body(message))),
        encodeAuthenticationOk(),
        encodeParameterStatus('server_version', '15.18'),
        encodeBackendKeyData(42, 7),
        encodeReadyForQuery('I'),
      ]),
  };
}

/** Feeds `bytes` to the login in two pieces split at `at`; returns its replies. */
function feed(login: IdleLogin, bytes: Buffer, at: number): Buffer[] {
  return [...login.receive(bytes.subarray(0, at)), ...login.receive(bytes.subarray(at))];
}

test('SCRAM-SHA-256 login to ReadyForQuery, whatever way the server bytes are split', () => {
  // Each server flight is split at every offset; the client must reach 'ready' every time.
  for (const flight of [0, 1, 2]) {
    let splits = 0;
    for (let at = 0; ; at++) {
      const login = new IdleLogin({ user: 'app', password: 'right-password', database: 'app' });
      const server = scramServer(VERIFIER);
      const startup = decodeStartupPacket(login.startup());
      assert.equal(startup.kind, 'startup');
      const first = server.onStartup();
      const [initial] = flight === 0 ? feed(login, first, Math.min(at, first.length)) : login.receive(first);
      assert.ok(initial, 'SASLInitialResponse');
      const cont = server.onInitial(initial);
      const [final] = flight === 1 ? feed(login, cont, Math.min(at, cont.length)) : login.receive(cont);
      assert.ok(final, 'SASLResponse');
      const last = server.onFinal(final);
      const rest = flight === 2 ? feed(login, last, Math.min(at, last.length)) : login.receive(last);
      assert.deepEqual(rest, []);
      assert.equal(login.state, 'ready', `flight ${flight} split at ${at}: ${login.error}`);
      assert.equal(login.error, null);
      splits++;
      if (at >= [first, cont, last][flight]!.length) break;
    }
    assert.ok(splits > 5);
  }
});

test('a wrong password fails at the server, a lying server fails at the client', () => {
  const login = new IdleLogin({ user: 'app', password: 'wrong', database: 'app' });
  const server = scramServer(VERIFIER);
  const [initial] = login.receive(server.onStartup());
  const [final] = login.receive(server.onInitial(initial!));
  assert.throws(() => server.onFinal(final!), /password authentication failed/);
  assert.deepEqual(login.receive(encodeErrorResponse({ severity: 'FATAL', code: '28P01', message: 'password authentication failed for user "app"' })), []);
  assert.equal(login.state, 'failed');
  assert.equal(login.error, '28P01: password authentication failed for user "app"');

  // A server that does not know the password cannot produce the right signature.
  const honest = new IdleLogin({ user: 'app', password: 'right-password', database: 'app' });
  const impostor = scramServer(buildScramVerifier('other', { iterations: 64 }));
  const [first] = honest.receive(impostor.onStartup());
  honest.receive(impostor.onInitial(first!));
  const signature = encodeAuthenticationSASLFinal(Buffer.from(`v=${Buffer.alloc(32, 1).toString('base64')}`));
  assert.deepEqual(honest.receive(Buffer.concat([signature, encodeAuthenticationOk(), encodeReadyForQuery('I')])), []);
  assert.equal(honest.state, 'failed');
  assert.match(honest.error ?? '', /server signature is wrong/);
});

test('trust logs in without a password exchange; other methods are refused; an error after the login ends it', () => {
  const trusted = new IdleLogin({ user: 'app', password: '', database: 'app' });
  assert.deepEqual(trusted.receive(Buffer.concat([encodeAuthenticationOk(), encodeReadyForQuery('I')])), []);
  assert.equal(trusted.state, 'ready');
  trusted.receive(encodeErrorResponse({ severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' }));
  assert.equal(trusted.state, 'failed');
  assert.match(trusted.error ?? '', /^57P01/);

  const md5 = new IdleLogin({ user: 'app', password: 'x', database: 'app' });
  const request = Buffer.from([0x52, 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4]);
  assert.deepEqual(md5.receive(request), []);
  assert.equal(md5.error, 'unsupported authentication request (code 5)');
  const plus = new IdleLogin({ user: 'app', password: 'x', database: 'app' });
  plus.receive(encodeAuthenticationSASL(['SCRAM-SHA-256-PLUS']));
  assert.equal(plus.error, 'server offers no SCRAM-SHA-256');
});

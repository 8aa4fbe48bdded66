// Hostile upstream servers (hardening issue, part 3): a fake Postgres (test/support/fake-upstream.ts)
// misbehaves during the login or after it, in front of a real ambassador driven by real clients
// (pg, and RawClient where the exact bytes matter). In every case the ambassador fails that one
// server connection, the client hears a clear error (its SQLSTATE asserted) or, where nothing
// else can be said, a clean close; and afterwards the same ambassador still serves a normal
// query through a good upstream, no server connection is left leased or leaked (pool snapshot
// and the fake's own open sockets agree), and no unhandledRejection/uncaughtException fired.
//
// One fake serves the login and after-login cases of a session-pooling and a transaction-pooling
// ambassador: its script is chosen by the database the client asks for (one pool per database,
// so cases do not share connections); database `app` is proxied unchanged to the real topology
// primary (health probes and the "still serves" checks use it). The server misbehaves only on
// queries that contain MARK, so the ambassador's own statements (RESET ALL, DISCARD ALL,
// ROLLBACK) get plain answers. A second fake answers SSLRequest badly for an ambassador with
// upstream.tls.mode prefer.
//
// By design the ambassador decodes only the server messages it must track (Z, E; in transaction
// mode also C, S): a DataRow's fields, an unknown message type or an ErrorResponse without
// SQLSTATE after the login reach the client as the server sent them, within valid framing.
//
// Timeouts that apply (src): upstream.connectTimeout bounds a login (TCP + TLS + auth);
// listen.clientIdleTimeout and idleInTransactionTimeout count only while the client is idle.
// After the login there is no server-response timeout: a server that stalls mid-result holds
// the client until it cancels (its CancelRequest is forwarded) or disconnects (the server
// connection is then closed), as with Postgres itself.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import {
  BackendType,
  encodeAuthenticationOk,
  encodeAuthenticationSASL,
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeNoticeResponse,
  encodeReadyForQuery,
  encodeTextRowDescription,
} from '../../src/protocol/backend.ts';
import { SCRAM_MAX_MESSAGE_BYTES } from '../../src/protocol/scram.ts';
import { encodeQuery } from '../../src/protocol/frontend.ts';
import { encodeCancelRequest } from '../../src/protocol/startup.ts';
import { MessageWriter } from '../../src/protocol/writer.ts';
import { ambassadorsFor, viaAmbassador, CLIENT_PASSWORD, type TestAmbassador } from '../support/ambassador.ts';
import { FakeUpstream, readyMessages, type FakeConnection, type Script } from '../support/fake-upstream.ts';
import { loginScram, RawClient, type WireMessage } from '../support/raw-client.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

const MARK = 'hostile';
const HOSTILE_SQL = `select '${MARK}'`;
const CONNECT_TIMEOUT_MS = 1000;
/** upstream.retry.max: a login failure that may pass (closed, timed out) is tried 1 + this many times. */
const RETRIES = 1;

let topology: Topology;
let upstreamPassword: string;
const ambassadors = ambassadorsFor(() => topology);
const scripts = new Map<string, Script>();
let fake: FakeUpstream;
/** Behind the TLS cases (upstream.tls.mode prefer): answers SSLRequest as each case sets. */
let tlsFake: FakeUpstream;
let sessionAmb: TestAmbassador;
let txnAmb: TestAmbassador;
let tlsAmb: TestAmbassador;

const processFaults: string[] = [];
const onUnhandledRejection = (reason: unknown): void => void processFaults.push(`unhandledRejection: ${reason instanceof Error ? reason.stack : String(reason)}`);
const onUncaughtException = (err: Error): void => void processFaults.push(`uncaughtException: ${err.stack ?? err.message}`);

/** Proxies database `app` to the real primary; any other database runs the script registered for it. */
function scriptFor(startup: ReadonlyMap<string, string>): Script {
  const database = startup.get('database') ?? '';
  if (database === 'app') return (c) => c.proxy(topology.primary);
  return scripts.get(database) ?? ((c) => c.refuse('3D000', `database "${database}" does not exist`));
}

/** The ambassador's config toward a fake: no TLS, short connect timeout, errors reach the client at once. */
function towards(port: number, overrides: { pool?: 'session' | 'transaction'; tls?: 'disable' | 'prefer' } = {}): Record<string, unknown> {
  return {
    upstream: {
      hosts: [{ host: '127.0.0.1', port, role: 'primary' }],
      tls: { mode: overrides.tls ?? 'disable', ca: null, serverName: null },
      connectTimeout: `${CONNECT_TIMEOUT_MS}ms`,
      retry: { max: RETRIES, initialDelay: '10ms', maxDelay: '50ms' },
    },
    pool: { mode: overrides.pool ?? 'session', size: 4, minIdle: 0 },
    // failoverTimeout 0: a failed connect reaches the client as it is. A fake that fails logins
    // on purpose must not open the host's breaker nor have it marked down for the cases after it
    // (both are right for a real host, and tested elsewhere).
    health: { failoverTimeout: '0s', failureThreshold: 1000, circuitBreaker: { threshold: 1000, cooldown: '1s' } },
  };
}

before(async () => {
  process.on('unhandledRejection', onUnhandledRejection);
  process.on('uncaughtException', onUncaughtException);
  topology = await getTopology();
  upstreamPassword = topology.users.app.password!;
  fake = await FakeUpstream.start({ scriptFor });
  tlsFake = await FakeUpstream.start({ scriptFor, sslAnswer: { kind: 'refuse' } });
  sessionAmb = await ambassadors.start(towards(fake.port, { pool: 'session' }));
  txnAmb = await ambassadors.start(towards(fake.port, { pool: 'transaction' }));
  tlsAmb = await ambassadors.start(towards(tlsFake.port, { tls: 'prefer' }));
  // The first client's login is the one health probes borrow: make it the proxied `app`.
  for (const amb of [sessionAmb, txnAmb, tlsAmb]) await assertServes(amb);
});

after(async () => {
  await ambassadors.stopAll();
  await fake?.close();
  await tlsFake?.close();
  process.off('unhandledRejection', onUnhandledRejection);
  process.off('uncaughtException', onUncaughtException);
  assert.deepEqual(processFaults, [], 'the process saw an unhandled rejection or an uncaught exception');
});

// ---- helpers ----------------------------------------------------------------------------------

let databases = 0;

/** Registers `script` under a fresh database name and returns the name. */
function register(label: string, script: Script): string {
  const database = `${label.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 40)}_${++databases}`;
  scripts.set(database, script);
  return database;
}

function pgClient(amb: TestAmbassador, database: string, queryTimeoutMs = 10_000): pg.Client {
  // query_timeout: a case the ambassador gets wrong fails the test instead of hanging it.
  const client = new pg.Client({ ...viaAmbassador(amb.port, { database }), connectionTimeoutMillis: 10_000, query_timeout: queryTimeoutMs } as pg.ClientConfig);
  client.on('error', () => {}); // the error a test expects is asserted where it is awaited
  return client;
}

interface PgError {
  code?: string;
  message: string;
  hint?: string;
  severity?: string;
}

/** A pg login through the ambassador that must be refused; returns the error. */
async function refusedLogin(amb: TestAmbassador, database: string): Promise<PgError> {
  const client = pgClient(amb, database);
  try {
    await client.connect();
  } catch (err) {
    return err as PgError;
  } finally {
    await client.end().catch(() => {});
  }
  throw new Error(`the login to ${database} was expected to be refused`);
}

/** A pg client logs in through `amb` to the proxied real primary and runs a query. */
async function assertServes(amb: TestAmbassador): Promise<void> {
  const client = pgClient(amb, 'app');
  try {
    await client.connect();
    const { rows } = await client.query('select 1 as one');
    assert.deepEqual(rows, [{ one: 1 }], 'the ambassador no longer serves a normal client');
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * No leak: the pools of `database` lease nothing and connect nothing, and every socket the fake
 * still has open for it is an idle pooled connection (and none is open when `expectIdle` is 0).
 */
async function assertSettled(amb: TestAmbassador, server: FakeUpstream, database: string, expectIdle?: number): Promise<void> {
  await eventually(
    async () => {
      const pools = amb.ambassador.pool.poolSummaries().filter((p) => p.database === database);
      const sum = (key: 'active' | 'connecting' | 'idle' | 'waiting'): number => pools.reduce((n, p) => n + p[key], 0);
      const open = server.openSessions(database).length;
      const state = `active ${sum('active')}, connecting ${sum('connecting')}, waiting ${sum('waiting')}, idle ${sum('idle')}, open at the server ${open}`;
      if (sum('active') !== 0 || sum('connecting') !== 0 || sum('waiting') !== 0 || open !== sum('idle')) throw new Error(`not settled: ${state}`);
      if (expectIdle !== undefined && open !== expectIdle) throw new Error(`expected ${expectIdle} idle server connections: ${state}`);
      return true;
    },
    { what: `the pool of ${database} to settle` },
  );
}

function assertProcessClean(): void {
  assert.deepEqual(processFaults, [], 'an unhandled rejection or uncaught exception happened');
}

/** After each case: nothing leaked, nothing escaped, and a normal client is still served. */
async function assertRecovered(amb: TestAmbassador, server: FakeUpstream, database: string, expectIdle?: number): Promise<void> {
  await assertSettled(amb, server, database, expectIdle);
  await assertServes(amb);
  assertProcessClean();
}

function authRequest(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return new MessageWriter().int32(code).bytes(data).finish(BackendType.Authentication);
}

/** A message header with any declared length (negative, too small, huge). */
function header(type: string, declaredLength: number): Buffer {
  const out = Buffer.alloc(5);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(declaredLength, 1);
  return out;
}

/** An ErrorResponse with only these fields (no SQLSTATE unless given). */
function bareError(fields: Record<string, string>): Buffer {
  const w = new MessageWriter();
  for (const [key, value] of Object.entries(fields)) w.byte(key.charCodeAt(0)).cstring(value);
  return w.byte(0).finish(BackendType.ErrorResponse);
}

const SALT = randomBytes(16).toString('base64');

/** A server-first-message with the given parts (the honest one, or a hostile variant). */
function serverFirst(nonce: string, salt = SALT, iterations = '4096'): string {
  return `r=${nonce},s=${salt},i=${iterations}`;
}

/** Starts a SCRAM login that the ambassador must refuse at the tampered step. */
function tamperedScram(tamper: Parameters<FakeConnection['loginScram']>[1]): Script {
  return async (c) => {
    await c.loginScram(upstreamPassword, tamper);
    await c.closed;
  };
}

/** Logs in honestly, answers plain queries, and runs `misbehave` on the first query with MARK. */
function afterLogin(misbehave: (c: FakeConnection) => Promise<void> | void, ...afterReady: Buffer[]): Script {
  return async (c) => {
    if (!(await c.loginScram(upstreamPassword))) return;
    c.ready(...afterReady);
    for (;;) {
      const sql = await c.serveUntil((text) => text.includes(MARK));
      if (sql === null) return c.end();
      await misbehave(c);
      if (c.isClosed) return;
    }
  };
}

const ROWS = [encodeTextRowDescription(['answer']), encodeDataRow(['1']), encodeDataRow(['2'])];
const DONE = [encodeCommandComplete('SELECT 2'), encodeReadyForQuery('I')];

// ---- login --------------------------------------------------------------------------------------

interface LoginCase {
  name: string;
  script: Script;
  sqlstate: string;
  message: RegExp;
  /** Server connections the login makes: 1 when retrying cannot help, else 1 + upstream.retry.max. */
  attempts: number;
}

const LOGIN_CASES: LoginCase[] = [
  {
    name: 'an unknown authentication method (code 99)',
    script: async (c) => {
      c.send(authRequest(99));
      await c.closed;
    },
    sqlstate: '08001',
    message: /unsupported authentication method \(code 99\)/,
    attempts: 1,
  },
  {
    name: 'AuthenticationSASL with no mechanism the ambassador knows',
    script: async (c) => {
      c.send(encodeAuthenticationSASL(['SCRAM-SHA-1', 'OAUTHBEARER']));
      await c.closed;
    },
    sqlstate: '08001',
    message: /offers no supported SASL mechanism \(SCRAM-SHA-1, OAUTHBEARER\)/,
    attempts: 1,
  },
  {
    name: 'a SCRAM server-first-message with a nonce over SCRAM_MAX_MESSAGE_BYTES',
    script: tamperedScram({ serverFirst: (nonce) => serverFirst(nonce + 'n'.repeat(SCRAM_MAX_MESSAGE_BYTES)) }),
    sqlstate: '08P01',
    message: /server-first-message is \d+ bytes; at most 4096 allowed/,
    attempts: 1,
  },
  {
    name: 'a SCRAM nonce that does not extend the client nonce',
    script: tamperedScram({ serverFirst: () => serverFirst('forged-nonce-0123456789abcdef') }),
    sqlstate: '08P01',
    message: /nonce does not extend the client nonce/,
    attempts: 1,
  },
  {
    name: 'a SCRAM iteration count of 0',
    script: tamperedScram({ serverFirst: (nonce) => serverFirst(`${nonce}x`, SALT, '0') }),
    sqlstate: '08P01',
    message: /iteration count "0" is not an integer/,
    attempts: 1,
  },
  {
    name: 'a SCRAM iteration count of 10^9 (the ambassador would burn a CPU for minutes)',
    script: tamperedScram({ serverFirst: (nonce) => serverFirst(`${nonce}x`, SALT, '1000000000') }),
    sqlstate: '08P01',
    message: /iteration count "1000000000" is not an integer from 1 to 1000000/,
    attempts: 1,
  },
  {
    name: 'a SCRAM iteration count that is not a number',
    script: tamperedScram({ serverFirst: (nonce) => serverFirst(`${nonce}x`, SALT, 'many') }),
    sqlstate: '08P01',
    message: /iteration count "many"/,
    attempts: 1,
  },
  {
    name: 'a SCRAM salt that is not base64',
    script: tamperedScram({ serverFirst: (nonce) => serverFirst(`${nonce}x`, '!!not base64!!') }),
    sqlstate: '08P01',
    message: /salt is not non-empty base64/,
    attempts: 1,
  },
  {
    name: 'a SCRAM server-final-message with a wrong server signature',
    script: tamperedScram({ serverFinal: () => `v=${randomBytes(32).toString('base64')}` }),
    sqlstate: '08001',
    message: /server signature is wrong: the server does not know the password/,
    attempts: 1,
  },
  {
    name: 'AuthenticationOk instead of the SCRAM server-final-message',
    script: tamperedScram({ instead: [encodeAuthenticationOk()] }),
    sqlstate: '08P01',
    message: /reported success before completing SCRAM authentication/,
    attempts: 1,
  },
  {
    name: 'AuthenticationOk and ReadyForQuery in one packet instead of the SCRAM server-final-message',
    script: tamperedScram({ instead: [encodeAuthenticationOk(), ...readyMessages(1, 1)] }),
    sqlstate: '08P01',
    message: /reported success before completing SCRAM authentication/,
    attempts: 1,
  },
  {
    name: 'a second authentication request before the first was answered',
    script: async (c) => {
      c.send(encodeAuthenticationSASL(['SCRAM-SHA-256']), encodeAuthenticationOk(), ...readyMessages(1, 1));
      await c.closed;
    },
    sqlstate: '08P01',
    message: /sent a message before its authentication request was answered/,
    attempts: 1,
  },
  {
    name: 'an ErrorResponse without SQLSTATE during login',
    script: async (c) => {
      c.send(bareError({ S: 'FATAL', M: 'go away' }));
      c.end();
      await c.closed;
    },
    sqlstate: '08P01',
    message: /refused the login without a SQLSTATE: go away/,
    attempts: 1,
  },
  {
    name: 'an ErrorResponse 28P01 during login',
    script: (c) => c.refuse('28P01', 'password authentication failed for user "app"'),
    sqlstate: '08001',
    message: /upstream authentication to 127\.0\.0\.1:\d+ failed: password authentication failed for user "app"/,
    attempts: 1,
  },
  {
    name: 'a message with a negative length',
    script: async (c) => {
      c.send(header('R', -1), Buffer.alloc(8));
      await c.closed;
    },
    sqlstate: '08P01',
    message: /malformed message from server 127\.0\.0\.1:\d+ during login: invalid message length -1/,
    attempts: 1,
  },
  {
    name: 'a message with a length under 4',
    script: async (c) => {
      c.send(header('R', 2), Buffer.alloc(8));
      await c.closed;
    },
    sqlstate: '08P01',
    message: /invalid message length 2/,
    attempts: 1,
  },
  {
    name: 'a message longer than the login limit (1 MiB)',
    script: async (c) => {
      c.send(header('R', 2 * 1024 * 1024 + 4), Buffer.alloc(64));
      await c.closed;
    },
    sqlstate: '08P01',
    message: /declares \d+ bytes, over the limit of 1048576/,
    attempts: 1,
  },
  {
    name: 'bytes after the login ReadyForQuery, before any query',
    script: afterLogin(() => {}, encodeNoticeResponse({ severity: 'NOTICE', code: '00000', message: 'unsolicited' })),
    sqlstate: '08P01',
    message: /sent data after ReadyForQuery before any query/,
    attempts: 1,
  },
  {
    name: 'the server closes during login',
    script: async (c) => {
      c.send(encodeAuthenticationSASL(['SCRAM-SHA-256']));
      await c.expect('p');
      c.destroy();
    },
    sqlstate: '08001',
    message: /closed the connection during login/,
    attempts: 1 + RETRIES,
  },
  {
    name: 'the server never answers the StartupMessage (upstream.connectTimeout ends it)',
    script: async (c) => {
      await c.closed;
    },
    sqlstate: '08001',
    message: new RegExp(`did not finish within ${CONNECT_TIMEOUT_MS} ms`),
    attempts: 1 + RETRIES,
  },
];

describe('a hostile server during login', () => {
  for (const scenario of LOGIN_CASES) {
    test(scenario.name, async () => {
      const database = register(scenario.name, scenario.script);
      const err = await refusedLogin(sessionAmb, database);
      assert.equal(err.code, scenario.sqlstate, `SQLSTATE of "${err.message}"`);
      assert.match(err.message, scenario.message);
      assert.equal(fake.sessions(database).length, scenario.attempts, 'server connections opened for the login');
      await assertRecovered(sessionAmb, fake, database, 0);
    });
  }
});

describe('a hostile answer to SSLRequest (upstream.tls.mode prefer)', () => {
  const cases: Array<{ name: string; answer: FakeUpstream['sslAnswer']; sqlstate: string; message: RegExp }> = [
    {
      name: "plaintext bytes in the same packet as 'S' are never taken for TLS data",
      answer: { kind: 'bytes', bytes: Buffer.concat([Buffer.from('S'), encodeReadyForQuery('I')]) },
      sqlstate: '08P01',
      message: /sent unencrypted data after its TLS answer/,
    },
    {
      name: "plaintext instead of a TLS handshake after 'S' fails the TLS handshake",
      answer: { kind: 'accept-then-plaintext', bytes: Buffer.concat([encodeAuthenticationSASL(['SCRAM-SHA-256'])]) },
      sqlstate: '08001',
      message: /TLS with 127\.0\.0\.1:\d+ failed \(prefer\)/,
    },
    {
      name: "an answer that is neither 'S' nor 'N'",
      answer: { kind: 'bytes', bytes: Buffer.from('E') },
      sqlstate: '08P01',
      message: /answered SSLRequest with byte 0x45/,
    },
  ];
  for (const scenario of cases) {
    test(scenario.name, async () => {
      tlsFake.sslAnswer = scenario.answer;
      // A database of its own, so no pooled connection of an earlier case can serve the login.
      const err = await refusedLogin(tlsAmb, register(scenario.name, (c) => c.refuse('3D000', 'not reached: the TLS negotiation fails first')));
      assert.equal(err.code, scenario.sqlstate, `SQLSTATE of "${err.message}"`);
      assert.match(err.message, scenario.message);
      await eventually(async () => (tlsFake.connections.every((c) => c.isClosed || c.kind === 'session') ? true : undefined), {
        what: 'the refused connections to be closed',
      });
      tlsFake.sslAnswer = { kind: 'refuse' };
      await assertServes(tlsAmb);
      await eventually(async () => (tlsAmb.ambassador.pool.poolSummaries().every((p) => p.active === 0 && p.connecting === 0) ? true : undefined), {
        what: 'no server connection left leased',
      });
      assertProcessClean();
    });
  }
});

// ---- after login ------------------------------------------------------------------------------

/** A client query that must fail with `sqlstate`; returns the error. */
async function failingQuery(client: pg.Client, sqlstate: string | undefined, message: RegExp): Promise<PgError> {
  const err = await client.query(HOSTILE_SQL).then(
    () => assert.fail('the query was expected to fail'),
    (e: unknown) => e as PgError,
  );
  assert.equal(err.code, sqlstate, `SQLSTATE of "${err.message}"`);
  assert.match(err.message, message);
  return err;
}

/** The client connection was closed by the ambassador. */
async function assertClosed(client: pg.Client): Promise<void> {
  const err = await client.query('select 1').then(
    () => null,
    (e: unknown) => e as Error,
  );
  assert.ok(err !== null, 'the client connection was expected to be closed');
}

/** A raw client logged in to `database`, with the messages of one query. */
async function rawQuery(amb: TestAmbassador, database: string): Promise<{ client: RawClient; replies: WireMessage[] }> {
  const client = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database });
  return { client, replies: await client.query(HOSTILE_SQL) };
}

async function nextMessages(client: RawClient, count: number): Promise<WireMessage[]> {
  const messages: WireMessage[] = [];
  while (messages.length < count) messages.push(await client.nextMessage());
  return messages;
}

/** Messages up to and including ReadyForQuery, errors included. */
async function untilReady(client: RawClient): Promise<WireMessage[]> {
  const messages: WireMessage[] = [];
  do messages.push(await client.nextMessage());
  while (messages.at(-1)!.type !== 'Z');
  return messages;
}

function types(messages: readonly WireMessage[]): string {
  return messages.map((m) => (m.error ? `E(${m.error.code})` : m.type)).join(' ');
}

for (const mode of ['session', 'transaction'] as const) {
  const amb = (): TestAmbassador => (mode === 'session' ? sessionAmb : txnAmb);
  /** What the client hears when the server stream breaks: FATAL and a close (session), or ERROR and it goes on (transaction). */
  const closesClient = mode === 'session';

  describe(`a hostile server after login (${mode} pooling)`, () => {
    test('closes mid-result (after RowDescription and two DataRows)', async () => {
      const database = register(`${mode} close mid result`, afterLogin((c) => {
        c.send(...ROWS);
        c.end();
      }));
      const client = pgClient(amb(), database);
      await client.connect();
      try {
        await failingQuery(client, '08006', /server connection to 127\.0\.0\.1:\d+ was lost/);
        if (closesClient) await assertClosed(client);
        else assert.deepEqual((await client.query('select 1')).rows, [{ '?column?': '1' }], 'the client goes on after the loss');
      } finally {
        await client.end().catch(() => {});
      }
      await assertRecovered(amb(), fake, database);
      assert.ok(fake.sessions(database)[0]!.isClosed, 'the broken server connection was closed');
    });

    test('closes in the middle of a DataRow: the client connection is closed (nothing can be added to half a message)', async () => {
      const database = register(`${mode} close mid message`, afterLogin((c) => {
        // A whole row first: in transaction mode the first answer is held back until a row comes.
        c.send(encodeTextRowDescription(['answer']), encodeDataRow(['1']), encodeDataRow(['2']).subarray(0, 8));
        c.end();
      }));
      const client = pgClient(amb(), database);
      await client.connect();
      try {
        await failingQuery(client, undefined, /Connection terminated unexpectedly/);
        await assertClosed(client);
      } finally {
        await client.end().catch(() => {});
      }
      await assertRecovered(amb(), fake, database, 0);
    });

    test('a DataRow with a negative field length other than -1 reaches the client unchanged (DataRows are not decoded)', async () => {
      const row = new MessageWriter().int16(1).int32(-2).finish(BackendType.DataRow);
      const database = register(`${mode} negative field length`, afterLogin((c) => c.send(encodeTextRowDescription(['answer']), row, ...DONE)));
      const { client, replies } = await rawQuery(amb(), database);
      try {
        assert.equal(types(replies), 'T D C Z');
        assert.deepEqual(replies[1]!.payload, row.subarray(5), 'the DataRow was forwarded byte for byte');
        assert.equal(types(await client.query('select 1')), 'T D C Z', 'the client goes on');
      } finally {
        client.destroy();
      }
      await assertRecovered(amb(), fake, database);
    });

    test('an unknown message type reaches the client unchanged (only the types the ambassador tracks are decoded)', async () => {
      const unknown = new MessageWriter().cstring('whatever').finish('Y'.charCodeAt(0));
      const database = register(`${mode} unknown message type`, afterLogin((c) => c.send(encodeTextRowDescription(['answer']), unknown, ...DONE)));
      const { client, replies } = await rawQuery(amb(), database);
      try {
        assert.equal(types(replies), 'T Y C Z');
        assert.deepEqual(replies[1]!.payload, unknown.subarray(5));
        assert.equal(types(await client.query('select 1')), 'T D C Z', 'the client goes on');
      } finally {
        client.destroy();
      }
      await assertRecovered(amb(), fake, database);
    });

    test('an ErrorResponse without SQLSTATE reaches the client as the server sent it, and the session goes on', async () => {
      const database = register(`${mode} error without sqlstate`, afterLogin((c) => c.send(bareError({ S: 'ERROR', M: 'no sqlstate here' }), encodeReadyForQuery('I'))));
      const client = pgClient(amb(), database);
      await client.connect();
      try {
        await failingQuery(client, undefined, /no sqlstate here/);
        assert.deepEqual((await client.query('select 1')).rows, [{ '?column?': '1' }]);
      } finally {
        await client.end().catch(() => {});
      }
      await assertRecovered(amb(), fake, database);
    });

    const streamBreaks = [
      { name: 'a message longer than the limit (declared 2 GiB)', bytes: [header('D', 0x7ffffff0), Buffer.alloc(16)], message: /over the limit/ },
      { name: 'a message with a negative length', bytes: [header('D', -1), Buffer.alloc(16)], message: /invalid message length -1/ },
      { name: 'ReadyForQuery with an invalid status byte', bytes: [encodeCommandComplete('SELECT 0'), header('Z', 5), Buffer.from('X')], message: /invalid transaction status 'X'/ },
      { name: 'ReadyForQuery with two status bytes', bytes: [encodeCommandComplete('SELECT 0'), header('Z', 6), Buffer.from('II')], message: /invalid transaction status ''/ },
    ];
    for (const scenario of streamBreaks) {
      test(`${scenario.name}: 08P01, and the server connection is closed`, async () => {
        const database = register(`${mode} ${scenario.name}`, afterLogin(async (c) => {
          c.send(encodeTextRowDescription(['answer']), ...scenario.bytes);
          await c.closed;
        }));
        const client = pgClient(amb(), database, 3_000);
        await client.connect();
        try {
          await failingQuery(client, '08P01', scenario.message);
          if (closesClient) await assertClosed(client);
          else assert.deepEqual((await client.query('select 1')).rows, [{ '?column?': '1' }], 'the client goes on');
        } finally {
          await client.end().catch(() => {});
        }
        await eventually(async () => (fake.sessions(database)[0]!.isClosed ? true : undefined), { what: 'the server connection to close' });
        await assertRecovered(amb(), fake, database);
      });
    }

    test('an ErrorResponse with an unterminated field (it would hang the parser of pg): 08P01', async () => {
      const unterminated = new MessageWriter().byte('S'.charCodeAt(0)).cstring('ERROR').bytes(Buffer.from('Mno end')).finish(BackendType.ErrorResponse);
      const database = register(`${mode} unterminated error field`, afterLogin(async (c) => {
        c.send(encodeTextRowDescription(['answer']), encodeDataRow(['1']), unterminated);
        await c.closed;
      }));
      // A raw client: pg itself would loop forever on this message, were it forwarded.
      const client = await loginScram(amb().port, 'app', CLIENT_PASSWORD, { database });
      try {
        client.write(encodeQuery(HOSTILE_SQL));
        const reply = await client.expectErrorOrClose();
        assert.equal(reply.kind === 'error' ? reply.code : 'a close without an error', '08P01');
        assert.match(types(client.history), / Z T D E\(08P01\)$/, 'the whole messages before the fault, then the error');
      } finally {
        client.destroy();
      }
      await eventually(async () => (fake.sessions(database)[0]!.isClosed ? true : undefined), { what: 'the server connection to close' });
      await assertRecovered(amb(), fake, database);
    });

    test('stalls mid-result: a CancelRequest from the client reaches the server and ends the query (57014)', async () => {
      const database = register(`${mode} stall then cancel`, afterLogin(async (c) => {
        const cancelled = c.cancelled();
        c.send(...ROWS);
        await cancelled;
        c.send(encodeErrorResponse({ severity: 'ERROR', code: '57014', message: 'canceling statement due to user request' }), encodeReadyForQuery('I'));
      }));
      const client = await loginScram(amb().port, 'app', CLIENT_PASSWORD, { database });
      const canceller = await RawClient.connect(amb().port);
      try {
        client.write(encodeQuery(HOSTILE_SQL));
        assert.equal(types(await nextMessages(client, 3)), 'T D D');
        canceller.write(encodeCancelRequest(client.backendKey!.processId, client.backendKey!.secretKey));
        assert.equal(types(await untilReady(client)), 'E(57014) Z');
      } finally {
        client.destroy();
        canceller.destroy();
      }
      assert.ok(fake.cancels.some((c) => c.matched), 'the fake server received a CancelRequest with its own key');
      await assertRecovered(amb(), fake, database);
    });

    test('stalls mid-result: the client disconnecting closes the server connection', async () => {
      const database = register(`${mode} stall then disconnect`, afterLogin(async (c) => {
        c.send(...ROWS);
        await c.closed;
      }));
      const client = await loginScram(amb().port, 'app', CLIENT_PASSWORD, { database });
      client.write(encodeQuery(HOSTILE_SQL));
      assert.equal(types(await nextMessages(client, 3)), 'T D D');
      client.destroy();
      await eventually(async () => (fake.sessions(database).every((c) => c.isClosed) ? true : undefined), { what: 'the stalled server connection to close' });
      await assertRecovered(amb(), fake, database, 0);
    });

    if (mode === 'session') {
      test('sends bytes while the client is idle: a malformed message ends the session with 08P01', async () => {
        const database = register(`${mode} unsolicited while idle`, afterLogin(() => {}));
        const client = await loginScram(amb().port, 'app', CLIENT_PASSWORD, { database });
        try {
          fake.sessions(database)[0]!.send(header('N', -7));
          const reply = await client.expectErrorOrClose();
          assert.deepEqual(reply.kind === 'error' ? reply.code : reply.kind, '08P01');
          await client.waitForClose();
        } finally {
          client.destroy();
        }
        await assertRecovered(amb(), fake, database, 0);
      });
    } else {
      test('sends bytes while its connection is idle in the pool: the connection is closed, the next query gets another', async () => {
        const database = register(`${mode} unsolicited while pooled`, afterLogin(() => {}));
        const client = pgClient(amb(), database);
        await client.connect();
        try {
          const pooled = fake.sessions(database)[0]!;
          pooled.send(encodeNoticeResponse({ severity: 'NOTICE', code: '00000', message: 'nobody asked' }));
          await eventually(async () => (pooled.isClosed ? true : undefined), { what: 'the pooled connection that spoke unasked to be closed' });
          assert.deepEqual((await client.query('select 1')).rows, [{ '?column?': '1' }]);
          assert.equal(fake.sessions(database).length, 2, 'the query ran on a new server connection');
        } finally {
          await client.end().catch(() => {});
        }
        await assertRecovered(amb(), fake, database, 1);
      });

      test('sends a FATAL in the same write as the ReadyForQuery that ends a transaction: it reaches no client, the next query gets another connection', async () => {
        // A server shutting down sends its idle sessions FATAL 57P01; when that lands in the same
        // read as the last answer, it belongs to no client (the lease goes back at the answer).
        const fatal = encodeErrorResponse({ severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' });
        const database = register(`${mode} fatal after ready`, afterLogin((c) => {
          c.send(encodeTextRowDescription(['answer']), encodeDataRow(['1']), ...DONE, fatal);
          c.end();
        }));
        const client = pgClient(amb(), database);
        const errors: Error[] = [];
        client.on('error', (err) => errors.push(err));
        await client.connect();
        try {
          assert.deepEqual((await client.query(HOSTILE_SQL)).rows, [{ answer: '1' }]);
          assert.deepEqual((await client.query('select 1')).rows, [{ '?column?': '1' }]);
          assert.deepEqual(errors, [], 'the client heard nothing of the FATAL');
          assert.ok(fake.sessions(database)[0]!.isClosed || fake.sessions(database).length >= 2, 'the query ran on a new server connection');
        } finally {
          await client.end().catch(() => {});
        }
        await assertRecovered(amb(), fake, database);
      });
    }
  });
}

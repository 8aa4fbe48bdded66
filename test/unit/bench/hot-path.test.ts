// The in-process hot path measures a forwarder that does its real work: each pgbench request
// reaches the server as the forwarder would send it (the prepared statement renamed to its
// shared server name), each answer reaches the client whole, and with splitting a read goes to
// the replica.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HOT_MODES, hotPath, measure, measurePooled, parseHotCli, pgbenchRequest, pooledClients, serverAnswer, type HotMode } from '../../../bench/hot-path.ts';
import { encodeReadyForQuery, PARSE_COMPLETE } from '../../../src/protocol/backend.ts';

/** The request as the server must get it: the client's statement name replaced by the server's. */
function expectedAtServer(mode: HotMode, aid: number, serverName: string | undefined): Buffer {
  if (mode !== 'prepared') return pgbenchRequest(mode, aid);
  assert.ok(serverName !== undefined && serverName !== 'P0_1', `a shared server name (${serverName})`);
  return pgbenchRequest(mode, aid, serverName);
}

for (const mode of HOT_MODES) {
  for (const split of [false, true]) {
    test(`${mode}${split ? ' with splitting' : ''}: requests reach the server as sent, answers reach the client whole`, async () => {
      const path = await hotPath(mode, split);
      const server = split ? path.replica : path.primary;
      const other = split ? path.primary : path.replica;
      server.keep = true;
      other.keep = true;
      path.client.keep = true;
      const answer = serverAnswer(mode);
      for (const aid of [7, 123456, 42]) path.transaction(pgbenchRequest(mode, aid), answer);
      const serverName = [...server.statements.keys()][0];
      assert.deepEqual(
        server.written.map((bytes) => bytes.toString('hex')),
        [7, 123456, 42].map((aid) => expectedAtServer(mode, aid, serverName).toString('hex')),
      );
      assert.deepEqual(other.written, [], 'nothing went to the other host');
      assert.equal(Buffer.concat(path.client.received).toString('hex'), Buffer.concat([answer, answer, answer]).toString('hex'));
    });
  }
}

test('measure gives one figure per round, in ns per transaction', async () => {
  const ns = await measure('simple', false, 2000, 3);
  assert.equal(ns.length, 3);
  for (const value of ns) assert.ok(Number.isFinite(value) && value > 0, `${value}`);
  // Forwarders taking turns: each transaction must still reach its server and come back.
  const turns = await measure('prepared', false, 2000, 2, 5);
  assert.equal(turns.length, 2);
  for (const value of turns) assert.ok(Number.isFinite(value) && value > 0, `${value}`);
});

test('a transaction nothing answers is an error, not a figure', async () => {
  const path = await hotPath('simple', false);
  // A Flush alone goes to a server, which owes no answer: the lease goes back at once.
  assert.throws(() => path.transaction(Buffer.from([0x48, 0, 0, 0, 4]), serverAnswer('simple')), /let go before its answer/);
  // Nothing at all: no server is asked.
  assert.throws(() => path.transaction(Buffer.alloc(0), serverAnswer('simple')), /no server got the request/);
});

for (const mode of HOT_MODES) {
  test(`${mode}, pooled: clients beyond the pool wait their turn, and every answer reaches the client that asked`, async () => {
    const pooled = await pooledClients(mode, 7, 3, true);
    await pooled.run(70);
    assert.equal(pooled.servers.length, 3, 'the pool opened no more than its size');
    const answer = serverAnswer(mode).toString('hex');
    // A prepared client's PQprepare was answered by the forwarder (ParseComplete, ReadyForQuery).
    const prepared = mode === 'prepared' ? Buffer.concat([PARSE_COMPLETE, encodeReadyForQuery('I')]).toString('hex') : '';
    let answers = 0;
    for (const [i, client] of pooled.clients.entries()) {
      const got = Buffer.concat(client.received).toString('hex');
      assert.ok(got.startsWith(prepared), `client ${i}: its PQprepare answered first`);
      const own = got.slice(prepared.length);
      const count = own.length / answer.length;
      assert.equal(own, answer.repeat(count), `client ${i} got whole answers, and nothing else`);
      // Each client has one request out at a time: one more sent than answered, whatever the turn.
      assert.equal(count, client.sent - 1, `client ${i}: one answer per request but the last`);
      assert.ok(count > 0, `client ${i} had turns`);
      answers += count;
    }
    assert.equal(answers, 70);
    // The servers took turns: with 7 clients on 3 servers, each served more than one client.
    for (const server of pooled.servers) assert.ok(server.written.length >= 10, `a server that served ${server.written.length} requests`);
  });
}

test('measurePooled gives one figure per round', async () => {
  const ns = await measurePooled('extended', 2000, 2, 9, 4);
  assert.equal(ns.length, 2);
  for (const value of ns) assert.ok(Number.isFinite(value) && value > 0, `${value}`);
});

test('the command line: defaults, every option, --help, and bad values refused by name', () => {
  assert.deepEqual(parseHotCli([]), { modes: [...HOT_MODES], split: false, transactions: 200_000, rounds: 5, clients: 1, servers: null });
  assert.deepEqual(parseHotCli(['--modes', 'prepared', '--transactions', '1000', '--rounds', '3', '--clients', '256', '--servers', '20']), {
    modes: ['prepared'], split: false, transactions: 1000, rounds: 3, clients: 256, servers: 20,
  });
  assert.equal(parseHotCli(['--help']), null);
  assert.equal(parseHotCli(['-h']), null);
  assert.throws(() => parseHotCli(['--rounds', '0']), /--rounds expects a positive integer, got "0"/);
  assert.throws(() => parseHotCli(['--transactions', '1e3x']), /--transactions expects a positive integer/);
  assert.throws(() => parseHotCli(['--modes', 'simple,copy']), /unknown mode copy/);
  assert.throws(() => parseHotCli(['--split', '--servers', '4']), /does not go with --split/);
  assert.throws(() => parseHotCli(['--bogus']), /Unknown option '--bogus'/);
});

// Answers written in the event loop's check phase. While other clients wait for the pool, an
// answer that ends at ReadyForQuery is written with the turn's other answers once the turn's
// reads are done; with nobody waiting it goes at once. Whatever else reaches the client (the
// forwarder's own messages, the end of the session) goes behind it, never ahead. Driven in
// process with bench/hot-path.ts's fake clients on a real Pooler of fake servers.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { pooledClients, serverAnswer, type PooledClients } from '../../../bench/hot-path.ts';
import { encodeErrorResponse, encodeReadyForQuery } from '../../../src/protocol/backend.ts';
import { encodeQuery } from '../../../src/protocol/frontend.ts';

const ANSWER = serverAnswer('simple');
const checkPhase = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** `clients` fake clients on `servers` fake servers, once every server has a client's request. */
async function clientsOn(mode: 'simple' | 'extended', clients: number, servers: number): Promise<PooledClients> {
  const fakes = await pooledClients(mode, clients, servers, true);
  // The pool opens its connections asynchronously; the first requests go out once they are open.
  for (let turns = 0; fakes.servers.length < servers || fakes.servers.some((server) => server.sink === null); turns++) {
    if (turns > 100) throw new Error('the servers never got their requests');
    await checkPhase();
  }
  return fakes;
}

test('with clients waiting for the pool, an answer is written in the check phase, whole, before the next waiter is served', async () => {
  // Three clients on one server: the first has it, the other two wait.
  const pooled = await clientsOn('simple', 3, 1);
  const [first, second] = pooled.clients;
  const server = pooled.servers[0]!;
  assert.equal(server.written.length, 1, 'one request on the server, two waiting');
  const order: string[] = [];
  const clientWrite = first!.write.bind(first);
  first!.write = (bytes: Uint8Array): boolean => {
    order.push('answer');
    return clientWrite(bytes);
  };
  const serverWrite = server.write.bind(server);
  server.write = (bytes: Uint8Array): boolean => {
    order.push('next request');
    return serverWrite(bytes);
  };

  server.sink!.onServerData(Buffer.from(ANSWER));
  assert.deepEqual(first!.received, [], 'not written inside the read');
  for (let i = 0; i < 3; i++) await Promise.resolve();
  assert.deepEqual(first!.received, [], 'nor in the microtasks behind it');
  await checkPhase();
  assert.equal(Buffer.concat(first!.received).toString('hex'), ANSWER.toString('hex'));
  assert.deepEqual(order, ['answer', 'next request'], 'the answer went out before the freed server got its next request');
  assert.equal(server.written.length, 2, 'the next waiter was served in the same check phase');
  assert.equal(second!.received.length, 0);
});

test('with nobody waiting, the answer is written at once', async () => {
  const pooled = await clientsOn('simple', 1, 1);
  const [only] = pooled.clients;
  pooled.servers[0]!.sink!.onServerData(Buffer.from(ANSWER));
  assert.equal(Buffer.concat(only!.received).toString('hex'), ANSWER.toString('hex'), 'written inside the read');
});

test('a deferred answer goes out ahead of what the client is told next, and of the end of its session', async () => {
  const pooled = await clientsOn('simple', 3, 1);
  const [first, second] = pooled.clients;
  const server = pooled.servers[0]!;
  server.sink!.onServerData(Buffer.from(ANSWER));
  assert.deepEqual(first!.received, []);
  // The forwarder's own answer (a SHOW it answers itself) is said before the check phase: behind the deferred one.
  first!.emit('data', encodeQuery('SHOW ambassador.route'));
  const told = Buffer.concat(first!.received).toString('hex');
  assert.ok(told.startsWith(ANSWER.toString('hex')), 'the deferred answer first');
  assert.ok(told.length > ANSWER.length * 2, 'then what the forwarder said');
  assert.ok(told.endsWith(encodeReadyForQuery('I').toString('hex')), 'its own answer whole');
  await checkPhase();
  assert.equal(Buffer.concat(first!.received).toString('hex'), told, 'nothing written twice');

  // The session ends right behind an answer (Terminate, shutdown): the answer still goes out.
  await checkPhase();
  const before = Buffer.concat(second!.received).length;
  server.sink!.onServerData(Buffer.from(ANSWER));
  assert.equal(Buffer.concat(second!.received).length, before, 'deferred');
  second!.forwarder!.stop();
  assert.equal(Buffer.concat(second!.received).subarray(before).toString('hex'), ANSWER.toString('hex'), 'written when the forwarder stops');
});

test('a deferred answer is dropped, not written, once the client socket is gone', async () => {
  const pooled = await clientsOn('simple', 3, 1);
  const [first] = pooled.clients;
  pooled.servers[0]!.sink!.onServerData(Buffer.from(ANSWER));
  first!.destroyed = true;
  first!.writable = false;
  await checkPhase();
  assert.deepEqual(first!.received, []);
});

test('an error answer is deferred like any other (it ends at ReadyForQuery), in extended protocol too', async () => {
  const pooled = await clientsOn('extended', 2, 1);
  const [first] = pooled.clients;
  const failed = Buffer.concat([encodeErrorResponse({ severity: 'ERROR', code: '42P01', message: 'relation "x" does not exist' }), encodeReadyForQuery('I')]);
  pooled.servers[0]!.sink!.onServerData(failed);
  assert.deepEqual(first!.received, []);
  await checkPhase();
  assert.equal(Buffer.concat(first!.received).toString('hex'), failed.toString('hex'));
});

test('payOwed (what the session calls before its own error) writes a deferred answer at once, and the check phase writes nothing more', async () => {
  const pooled = await clientsOn('simple', 3, 1);
  const [first] = pooled.clients;
  pooled.servers[0]!.sink!.onServerData(Buffer.from(ANSWER));
  assert.deepEqual(first!.received, [], 'deferred');
  first!.forwarder!.payOwed();
  // What ClientSession.writeError puts behind it (an idle timeout, a shutdown).
  const sessionError = encodeErrorResponse({ severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' });
  first!.write(sessionError);
  await checkPhase();
  assert.equal(Buffer.concat(first!.received).toString('hex'), Buffer.concat([ANSWER, sessionError]).toString('hex'));
  first!.forwarder!.payOwed();
  assert.equal(Buffer.concat(first!.received).length, ANSWER.length + sessionError.length, 'paid once');
});

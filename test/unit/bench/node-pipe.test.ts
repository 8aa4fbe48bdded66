// node-pipe, the bench's Node floor: bytes go through unchanged both ways, and either side
// closing closes the other (no socket is left open after a client goes).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { startNodePipe } from '../../../bench/node-pipe.ts';

/** A pipe in front of `upstream` (closed after the test), and a client connected through it. */
async function throughPipe(t: TestContext, upstream: net.Server): Promise<net.Socket> {
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const pipe = await startNodePipe('127.0.0.1', (upstream.address() as net.AddressInfo).port);
  t.after(() => {
    pipe.close();
    upstream.close();
  });
  const client = net.connect((pipe.address() as net.AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  return client;
}

test('node-pipe: bytes pass both ways unchanged; the upstream closing closes the client', async (t) => {
  const upstreamSockets: net.Socket[] = [];
  // The upstream answers every chunk with its bytes reversed, so an answer proves a round trip.
  const upstream = net.createServer((socket) => {
    upstreamSockets.push(socket);
    socket.on('data', (chunk: Buffer) => socket.write(Buffer.from(chunk).reverse()));
  });
  const client = await throughPipe(t, upstream);
  client.write('abc');
  const [answer] = (await once(client, 'data')) as [Buffer];
  assert.equal(answer.toString(), 'cba');

  upstreamSockets[0]!.destroy();
  await once(client, 'close');
  assert.equal(client.destroyed, true);
});

test('node-pipe: the client closing closes its upstream connection', async (t) => {
  const upstream = net.createServer((socket) => socket.resume());
  const accepted = new Promise<net.Socket>((resolve) => upstream.once('connection', resolve));
  const client = await throughPipe(t, upstream);
  const server = await accepted;
  const serverClosed = once(server, 'close');
  client.destroy();
  await serverClosed;
  assert.equal(server.destroyed, true);
});

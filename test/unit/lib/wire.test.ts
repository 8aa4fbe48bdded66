import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { test, type TestContext } from 'node:test';
import { openWire, type WireListener } from '../../../src/lib/wire.ts';

/** A connected loopback pair: `near` is the accepted socket (what the ambassador holds), `far` the peer. */
async function pair(t: TestContext): Promise<{ near: net.Socket; far: net.Socket }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const far = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [near] = (await once(server, 'connection')) as [net.Socket];
  await once(far, 'connect');
  server.close();
  t.after(() => {
    near.destroy();
    far.destroy();
  });
  return { near, far };
}

/**
 * Records what a wire delivers: the chunks themselves, not copies (a chunk must stay as it was
 * after later reads); `arrived` runs after each chunk, `drained` settles on the first drain.
 */
function recorder(): WireListener & { chunks: Buffer[]; arrived: (() => void) | null; drains: number; drained: Promise<void>; bytes(): Buffer } {
  const chunks: Buffer[] = [];
  let drained!: () => void;
  const listener = {
    chunks,
    arrived: null as (() => void) | null,
    drains: 0,
    drained: new Promise<void>((resolve) => (drained = resolve)),
    onData: (chunk: Buffer) => {
      chunks.push(chunk);
      listener.arrived?.();
    },
    onDrain: () => {
      listener.drains++;
      drained();
    },
    bytes: () => Buffer.concat(chunks),
  };
  return listener;
}

/** Reads `far` (resuming it) until `count` bytes came, and returns them. */
async function readFrom(far: net.Socket, count: number): Promise<Buffer> {
  const received: Buffer[] = [];
  let total = 0;
  const onData = (chunk: Buffer): void => {
    received.push(chunk);
    total += chunk.length;
  };
  far.on('data', onData);
  far.resume();
  while (total < count) await once(far, 'data');
  far.off('data', onData);
  return Buffer.concat(received);
}

/** Resolves once `count` bytes have arrived in `listener`. */
async function until(listener: ReturnType<typeof recorder>, count: number): Promise<void> {
  while (listener.bytes().length < count) await new Promise<void>((resolve) => (listener.arrived = resolve));
  listener.arrived = null;
}

/** A round trip over a second loopback pair: every read the loop had ready before it has been handled after it. */
async function loopTurns(t: TestContext): Promise<void> {
  const { near, far } = await pair(t);
  far.write('x');
  await once(near, 'data');
}

const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

test('a plain TCP socket is read and written through its handle, in order, both ways', async (t) => {
  const { near, far } = await pair(t);
  const listener = recorder();
  const wire = openWire(near, listener);
  assert.equal(wire.direct, true);
  wire.resume();

  far.write('hello ');
  far.write('world');
  await until(listener, 11);
  assert.equal(listener.bytes().toString(), 'hello world');

  assert.equal(wire.write(Buffer.from('one,')), true);
  assert.equal(wire.write(Buffer.from('two')), true);
  assert.equal((await readFrom(far, 7)).toString(), 'one,two');
  assert.equal(near.bytesWritten, 7, "the socket's count includes what went past its Writable");
});

test('a chunk handed to the listener stays as it was after later reads (reads share one buffer)', async (t) => {
  const { near, far } = await pair(t);
  const listener = recorder();
  openWire(near, listener).resume();
  let sent = 0;
  for (const text of ['first', 'SECOND', 'third!']) {
    far.write(text);
    await until(listener, (sent += text.length));
  }
  assert.deepEqual(listener.chunks.map(String), ['first', 'SECOND', 'third!']);
});

test('a write the kernel cannot take whole reports false and drains once the peer read it all, bytes intact', async (t) => {
  const { near, far } = await pair(t);
  const listener = recorder();
  const queuedAtDrain: number[] = [];
  const onDrain = listener.onDrain;
  listener.onDrain = () => {
    queuedAtDrain.push(near.writableLength + (near as unknown as { _handle: { writeQueueSize: number } })._handle.writeQueueSize);
    onDrain();
  };
  const wire = openWire(near, listener);
  far.pause();
  const big = randomBytes(32 * 1024 * 1024);
  assert.equal(wire.write(big), false, 'more than the socket buffers can hold is queued');
  assert.equal(listener.drains, 0);
  const tail = Buffer.from('tail');
  wire.write(tail); // behind the queued bytes
  const all = await readFrom(far, big.length + tail.length);
  assert.equal(all.length, big.length + tail.length);
  assert.equal(sha(all.subarray(0, big.length)), sha(big));
  assert.equal(all.subarray(big.length).toString(), 'tail');
  await listener.drained;
  assert.deepEqual(queuedAtDrain, [0], 'one drain, once nothing written is queued any more');
});

test('a write behind bytes a stream write left queued goes out after them, and its drain comes when they are gone', async (t) => {
  const { near, far } = await pair(t);
  const listener = recorder();
  const wire = openWire(near, listener);
  far.pause();
  const big = randomBytes(16 * 1024 * 1024);
  near.write(big); // libuv holds what the kernel did not take...
  near.write(Buffer.from('second,')); // ...and the Writable this, until that is sent
  assert.ok(near.writableLength > big.length);
  assert.equal(wire.write(Buffer.from('after')), false, 'queued behind more than the high-water mark');
  const all = await readFrom(far, big.length + 12);
  assert.equal(sha(all.subarray(0, big.length)), sha(big));
  assert.equal(all.subarray(big.length).toString(), 'second,after');
  await listener.drained;
  assert.equal(listener.drains, 1);
});

test('pause stops delivery until resume; what arrived meanwhile comes then, in order', async (t) => {
  const { near, far } = await pair(t);
  const listener = recorder();
  const wire = openWire(near, listener);
  wire.resume();
  far.write('a');
  await until(listener, 1);
  wire.pause();
  assert.equal(wire.paused, true);
  far.write('b');
  far.write('c');
  await loopTurns(t);
  assert.equal(listener.bytes().toString(), 'a', 'nothing delivered while paused');
  wire.resume();
  assert.equal(wire.paused, false);
  await until(listener, 3);
  assert.equal(listener.bytes().toString(), 'abc');
});

test('bytes the socket buffered before the wire took over are delivered first, on resume', async (t) => {
  const { near, far } = await pair(t);
  near.pause();
  far.write('early');
  await once(near, 'readable');
  const listener = recorder();
  const wire = openWire(near, listener);
  assert.equal(listener.chunks.length, 0, 'held until resume');
  far.write('-late');
  await loopTurns(t);
  assert.equal(listener.chunks.length, 0);
  wire.resume();
  await until(listener, 10);
  assert.equal(listener.bytes().toString(), 'early-late');
});

test("the peer's end and a reset reach the socket's own events", async (t) => {
  const { near, far } = await pair(t);
  const listener = recorder();
  const wire = openWire(near, listener);
  wire.resume();
  const closed = new Promise((resolve) => near.once('close', resolve));
  far.end('bye');
  await closed;
  assert.equal(listener.bytes().toString(), 'bye');

  const other = await pair(t);
  const errors: Error[] = [];
  other.near.on('error', (err) => errors.push(err));
  openWire(other.near, recorder()).resume();
  const closedToo = new Promise((resolve) => other.near.once('close', resolve));
  other.far.resetAndDestroy();
  await closedToo;
  assert.equal((errors[0] as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET');
});

test('a detached wire delivers nothing more; a write on a destroyed socket reports false', async (t) => {
  const { near, far } = await pair(t);
  const listener = recorder();
  const wire = openWire(near, listener);
  wire.resume();
  wire.detach();
  far.write('ignored');
  await loopTurns(t);
  assert.equal(listener.chunks.length, 0);

  near.destroy();
  assert.equal(wire.write(Buffer.from('late')), false);
  wire.pause();
  wire.resume();
  assert.equal(near.bytesWritten, 0);
});

test('a TLS socket, or one with no libuv stream handle of its own, goes through its streams', async (t) => {
  const { near } = await pair(t);
  const secure = new tls.TLSSocket(near, { isServer: true });
  t.after(() => secure.destroy());
  assert.equal(openWire(secure, recorder()).direct, false);

  const socket = new net.Socket();
  assert.equal(openWire(socket, recorder()).direct, false);
  socket.destroy();
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Outgoing } from '../../../src/frontend/outgoing.ts';
import { decodeBindNames, encodeSync, FrontendType } from '../../../src/protocol/frontend.ts';
import { frameMessage } from '../../../src/protocol/writer.ts';

/** Bind of `statement` to portal `portal`, one text parameter, text results. */
function bindMessage(portal: string, statement: string, value: string): Buffer {
  const param = Buffer.from(value);
  const length = Buffer.alloc(4);
  length.writeInt32BE(param.length);
  return frameMessage(FrontendType.Bind, Buffer.concat([Buffer.from(`${portal}\0${statement}\0`), Buffer.from([0, 0, 0, 1]), length, param, Buffer.from([0, 0])]));
}

const execute = frameMessage(FrontendType.Execute, Buffer.from([0, 0, 0, 0, 0]));

test('messages side by side in one chunk go as a view of it: nothing copied', () => {
  const chunk = Buffer.concat([Buffer.from('xx'), execute, encodeSync(), Buffer.from('yy')]);
  const out = new Outgoing();
  out.add(chunk, 2, 2 + execute.length);
  out.add(chunk, 2 + execute.length, 2 + execute.length + 5);
  const taken = out.take()!;
  assert.deepEqual(taken, Buffer.concat([execute, encodeSync()]));
  chunk[2] = 0x21;
  assert.equal(taken[0], 0x21, 'the same memory as the chunk');
});

test('messages that fill their chunk go as the chunk itself; a gap between them or another order means a copy', () => {
  const chunk = Buffer.concat([execute, encodeSync()]);
  const out = new Outgoing();
  out.add(chunk, 0, execute.length);
  out.add(chunk, execute.length, chunk.length);
  assert.equal(out.take(), chunk);
  out.add(chunk, execute.length, chunk.length);
  out.add(chunk, 0, execute.length);
  const reordered = out.take()!;
  assert.deepEqual(reordered, Buffer.concat([encodeSync(), execute]));
  chunk[execute.length] = 0x21;
  assert.equal(reordered[0], FrontendType.Sync, 'a copy');
  const spaced = Buffer.concat([execute, Buffer.from('xx'), encodeSync()]);
  out.add(spaced, 0, execute.length);
  out.add(spaced, execute.length + 2, spaced.length);
  assert.deepEqual(out.take(), Buffer.concat([execute, encodeSync()]));
});

test('messages from different buffers are copied into one', () => {
  const first = Buffer.from(execute);
  const second = encodeSync();
  const out = new Outgoing();
  out.add(first);
  out.add(second);
  const taken = out.take()!;
  assert.deepEqual(taken, Buffer.concat([execute, encodeSync()]));
  first[0] = 0x21;
  assert.equal(taken[0], FrontendType.Execute, 'a copy');
});

test('a renamed Bind is written in place among the messages around it, in one buffer', () => {
  const message = bindMessage('portal', 'mine', '42');
  // Among other bytes, as it lies in a client's chunk.
  const chunk = Buffer.concat([execute, message, encodeSync()]);
  const start = execute.length;
  const end = start + message.length;
  const { portalEnd, restOffset } = decodeBindNames(chunk, null, start + 5, end);
  const out = new Outgoing();
  out.add(execute);
  out.addRenamedBind({ chunk, start, end, portalEnd, restOffset }, Buffer.from('pa_0123456789\0'));
  out.add(encodeSync());
  const taken = out.take()!;
  const expected = bindMessage('portal', 'pa_0123456789', '42');
  assert.deepEqual(taken, Buffer.concat([execute, expected, encodeSync()]));
  assert.equal(taken.readInt32BE(execute.length + 1), expected.length - 1, 'the Bind carries its new length');
});

test('take() empties it; nothing added gives null; clear() drops what was added', () => {
  const out = new Outgoing();
  assert.equal(out.take(), null);
  out.add(execute);
  assert.deepEqual(out.take(), execute);
  assert.equal(out.take(), null);
  const chunk = bindMessage('', 'mine', '1');
  out.addRenamedBind({ chunk, start: 0, end: chunk.length, ...decodeBindNames(chunk, null, 5) }, Buffer.from('pa_1\0'));
  out.clear();
  out.add(encodeSync());
  assert.deepEqual(out.take(), encodeSync(), 'nothing of the dropped Bind');
});

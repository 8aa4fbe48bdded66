// What a transaction forwarder driven by bench/hot-path.ts's fakes said and sent, as short
// strings and bytes for unit tests to compare, and the Bind they send it.

import { Buffer } from 'node:buffer';
import type { HotPath } from '../../bench/hot-path.ts';
import { decodeErrorFields } from '../../src/protocol/backend.ts';
import { FrontendType } from '../../src/protocol/frontend.ts';
import { MessageWriter } from '../../src/protocol/writer.ts';

/**
 * Each message the client got since the last call, as its type letter: an error with its
 * SQLSTATE (and its routine, when it names one), ReadyForQuery with the transaction status.
 */
export function received(path: HotPath): string {
  const bytes = Buffer.concat(path.client.received.splice(0));
  const out: string[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const type = String.fromCharCode(bytes[offset]!);
    const end = offset + 1 + bytes.readInt32BE(offset + 1);
    if (type === 'E') {
      const fields = decodeErrorFields(bytes.subarray(offset + 5, end));
      out.push(`E(${fields.get('C')}${fields.has('R') ? ` ${fields.get('R')}` : ''})`);
    } else out.push(type === 'Z' ? `Z(${String.fromCharCode(bytes[end - 1]!)})` : type);
    offset = end;
  }
  return out.join(' ');
}

/** What the primary was sent since the last call. */
export function sent(path: HotPath): Buffer {
  return Buffer.concat(path.primary.written.splice(0));
}

/** A Bind of `statement` to the unnamed portal, with text `values`. */
export function bind(statement: string, values: readonly string[]): Buffer {
  const writer = new MessageWriter().cstring('').cstring(statement).int16(0).int16(values.length);
  for (const value of values) writer.int32(Buffer.byteLength(value)).bytes(Buffer.from(value));
  return writer.int16(0).finish(FrontendType.Bind);
}

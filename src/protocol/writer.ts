// A small builder for typed protocol messages: collects fields, then emits one Buffer with the
// type byte and the length filled in. Used for the few messages the ambassador originates
// (errors, auth requests, status); forwarded messages are never re-encoded.

import { Buffer } from 'node:buffer';

export class MessageWriter {
  private parts: Buffer[] = [];
  private size = 0;

  int32(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(value, 0);
    return this.push(b);
  }

  int16(value: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeInt16BE(value, 0);
    return this.push(b);
  }

  byte(value: number): this {
    return this.push(Buffer.from([value]));
  }

  /** A NUL-terminated UTF-8 string. NULs inside the value are dropped, never emitted. */
  cstring(value: string): this {
    const clean = value.includes('\0') ? value.replaceAll('\0', '') : value;
    return this.push(Buffer.from(`${clean}\0`, 'utf8'));
  }

  bytes(value: Buffer): this {
    return this.push(value);
  }

  /** Emits the message with the given type byte; a type of 0 emits an untyped packet. */
  finish(type: number): Buffer {
    const headerSize = type === 0 ? 4 : 5;
    const out = Buffer.allocUnsafe(headerSize + this.size);
    let pos = 0;
    if (type !== 0) out[pos++] = type;
    out.writeInt32BE(this.size + 4, pos);
    pos += 4;
    for (const part of this.parts) pos += part.copy(out, pos);
    this.parts = [];
    this.size = 0;
    return out;
  }

  private push(b: Buffer): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
}

/** Below this many bytes, copyBytes copies byte by byte. */
const SMALL_COPY = 32;

/**
 * Copies `source[start, end)` into `target` at `at`; returns how many bytes it copied. Buffer#copy
 * makes a view of the source range on every call that does not copy a whole buffer: for the few
 * bytes of a statement name or a Sync, a loop costs less than that view.
 */
export function copyBytes(target: Buffer, at: number, source: Buffer, start: number, end: number): number {
  const count = end - start;
  if (count >= SMALL_COPY) return source.copy(target, at, start, end);
  for (let i = 0; i < count; i++) target[at + i] = source[start + i]!;
  return count;
}

/** Puts a header on a payload: the whole message as it travels on the wire. */
export function frameMessage(type: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = type;
  out.writeInt32BE(payload.length + 4, 1);
  payload.copy(out, 5);
  return out;
}

/** Reads fields from a message payload; every read is bounds-checked. */
export class PayloadReader {
  private pos = 0;

  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  byte(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new RangeError('unterminated string in message');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }

  bytes(n: number): Buffer {
    if (n < 0) throw new RangeError(`negative length ${n} in message`);
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  rest(): Buffer {
    const b = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return b;
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new RangeError('message shorter than its fields');
  }
}

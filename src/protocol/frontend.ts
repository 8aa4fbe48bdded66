// Frontend (client -> server) messages: decoders for the ones the ambassador inspects during
// authentication, and encoders for what it sends upstream while authenticating itself.
// Pure: no sockets, timers or logging.

import { Buffer } from 'node:buffer';
import { copyBytes, MessageWriter, PayloadReader } from './writer.ts';

export const FrontendType = {
  Query: 0x51, // Q
  Parse: 0x50, // P
  Bind: 0x42, // B
  Describe: 0x44, // D
  Execute: 0x45, // E
  Close: 0x43, // C
  Sync: 0x53, // S
  Flush: 0x48, // H
  Terminate: 0x58, // X
  FunctionCall: 0x46, // F
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  /** PasswordMessage, SASLInitialResponse and SASLResponse share this type byte. */
  Password: 0x70, // p
} as const;

/** A PasswordMessage payload: the password as a NUL-terminated string. */
export function decodePasswordMessage(payload: Buffer): string {
  const r = new PayloadReader(payload);
  const password = r.cstring();
  if (r.remaining !== 0) throw new RangeError('trailing bytes after password');
  return password;
}

/** A SASLInitialResponse payload: mechanism name, then the optional initial client data. */
export function decodeSASLInitialResponse(payload: Buffer): { mechanism: string; data: Buffer } {
  const r = new PayloadReader(payload);
  const mechanism = r.cstring();
  const length = r.int32();
  const data = length === -1 ? Buffer.alloc(0) : r.bytes(length);
  if (r.remaining !== 0) throw new RangeError('trailing bytes after SASL initial response');
  return { mechanism, data };
}

export function encodePasswordMessage(password: string): Buffer {
  return new MessageWriter().cstring(password).finish(FrontendType.Password);
}

export function encodeSASLInitialResponse(mechanism: string, data: Buffer): Buffer {
  return new MessageWriter().cstring(mechanism).int32(data.length).bytes(data).finish(FrontendType.Password);
}

export function encodeSASLResponse(data: Buffer): Buffer {
  return new MessageWriter().bytes(data).finish(FrontendType.Password);
}

export function encodeTerminate(): Buffer {
  return new MessageWriter().finish(FrontendType.Terminate);
}

export function encodeQuery(sql: string): Buffer {
  return new MessageWriter().cstring(sql).finish(FrontendType.Query);
}

// ---- extended-protocol messages the pooler rewrites (statement names) ----

export interface ParseMessage {
  name: string;
  query: string;
  /** The parameter-type section as sent (int16 count + int32 OIDs): a view of the payload, not a copy. */
  paramTypes: Buffer;
}

export function decodeParse(payload: Buffer): ParseMessage {
  const r = new PayloadReader(payload);
  const name = r.cstring();
  const query = r.cstring();
  const paramTypes = r.rest();
  if (paramTypes.length < 2 || paramTypes.length !== 2 + 4 * paramTypes.readUInt16BE(0)) {
    throw new RangeError('malformed parameter types in Parse');
  }
  return { name, query, paramTypes };
}

export function encodeParse(name: string, query: string, paramTypes: Buffer): Buffer {
  return new MessageWriter().cstring(name).cstring(query).bytes(paramTypes).finish(FrontendType.Parse);
}

/**
 * A Bind as the client sent it: the whole message, `chunk[start, end)` (header included), and
 * where its names end in `chunk` (decodeBindNames read from the same chunk gives both).
 */
export interface BindLayout {
  chunk: Buffer;
  start: number;
  end: number;
  /** Index in chunk of the NUL that ends the portal name. */
  portalEnd: number;
  /** Index in chunk just past the NUL that ends the statement name. */
  restOffset: number;
}

/**
 * A Bind's portal and statement names, read from its payload `bytes[from, to)` (the whole of
 * `bytes` by default), and where they end, as indexes in `bytes`; `names` remembers statement
 * names read before.
 */
export function decodeBindNames(
  bytes: Buffer,
  names: NameCache | null = null,
  from = 0,
  to = bytes.length,
): { portal: string; statement: string; portalEnd: number; restOffset: number } {
  const portalEnd = nulIndex(bytes, from, to);
  const statementEnd = portalEnd < 0 ? -1 : nulIndex(bytes, portalEnd + 1, to);
  if (statementEnd < 0) throw new RangeError('malformed Bind');
  return {
    // The unnamed portal (nearly every Bind) needs no decoding.
    portal: portalEnd === from ? '' : bytes.toString('utf8', from, portalEnd),
    statement: statementEnd === portalEnd + 1 ? '' : names === null ? bytes.toString('utf8', portalEnd + 1, statementEnd) : names.read(bytes, portalEnd + 1, statementEnd),
    portalEnd,
    restOffset: statementEnd + 1,
  };
}

/**
 * Index of the first NUL in bytes[from, to), or -1. A loop: the names it ends are a few bytes
 * long, and Buffer#indexOf is a call into the runtime that costs several times more than that.
 */
export function nulIndex(bytes: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to; i++) if (bytes[i] === 0) return i;
  return -1;
}

const NAME_SLOTS = 16;

/**
 * Names read from one client's messages, for the next time the same bytes come: a driver names
 * the same few prepared statements in Bind after Bind, and a string made from a Buffer costs
 * more than the rest of reading a Bind (about 0.3 µs under pgbench -M prepared). A name read
 * again is the same string, its hash already computed for the lookups that follow. A name is
 * kept when it has one character per byte, and matched by comparing its characters with the
 * bytes; a slot holds the last name of its length and last byte.
 */
export class NameCache {
  private readonly slots: string[] = Array<string>(NAME_SLOTS).fill('');

  /** payload[start, end) (not empty) decoded as UTF-8. */
  read(payload: Buffer, start: number, end: number): string {
    const length = end - start;
    const slot = (length * 7 + payload[end - 1]!) & (NAME_SLOTS - 1);
    const known = this.slots[slot]!;
    if (known.length === length) {
      let i = 0;
      while (i < length && known.charCodeAt(i) === payload[start + i]) i++;
      if (i === length) return known;
    }
    const name = payload.toString('utf8', start, end);
    // Kept when it has a character per byte: then a later name whose bytes equal its characters
    // decodes to it (a byte that is not UTF-8 reads as U+FFFD, which no byte equals; a letter
    // beyond ASCII takes two bytes or more, so a name with one is not kept).
    if (name.length === length) this.slots[slot] = name;
    return name;
  }
}

/** Size of the Bind `bind` with its statement name replaced by `name` (its bytes and NUL). */
export function renamedBindSize(bind: BindLayout, name: Buffer): number {
  return bind.portalEnd + 1 - bind.start + name.length + bind.end - bind.restOffset;
}

/**
 * Writes that Bind, header included, at `at`; returns the offset just past it. Everything but
 * the statement name is copied as it came, the portal name as bytes (it need not be UTF-8: the
 * client's encoding may be another).
 */
export function writeRenamedBind(target: Buffer, at: number, bind: BindLayout, name: Buffer): number {
  const { chunk, start, end, portalEnd, restOffset } = bind;
  target[at] = FrontendType.Bind;
  target.writeInt32BE(renamedBindSize(bind, name) - 1, at + 1);
  let to = at + 5;
  to += copyBytes(target, to, chunk, start + 5, portalEnd + 1);
  to += copyBytes(target, to, name, 0, name.length);
  to += copyBytes(target, to, chunk, restOffset, end);
  return to;
}

/** Describe and Close: a target kind ('S' statement, 'P' portal) and a name, read from the payload `bytes[from, to)` (all of it by default). */
export function decodeTarget(bytes: Buffer, from = 0, to = bytes.length): { kind: 'S' | 'P'; name: string } {
  const first = from < to ? bytes[from]! : 0;
  const kind = first === 0x53 ? 'S' : first === 0x50 ? 'P' : null;
  if (kind === null) throw new RangeError(`invalid Describe/Close target '${String.fromCharCode(first)}'`);
  const end = nulIndex(bytes, from + 1, to);
  if (end !== to - 1) throw new RangeError('malformed Describe/Close');
  // The unnamed portal or statement (most of them) needs no decoding.
  return { kind, name: end === from + 1 ? '' : bytes.toString('utf8', from + 1, end) };
}

export function encodeTarget(type: typeof FrontendType.Describe | typeof FrontendType.Close, kind: 'S' | 'P', name: string): Buffer {
  return new MessageWriter().byte(kind.charCodeAt(0)).cstring(name).finish(type);
}

export function encodeSync(): Buffer {
  return new MessageWriter().finish(FrontendType.Sync);
}

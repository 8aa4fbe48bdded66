// Startup-phase packets: the untyped, length-prefixed messages a client sends before the typed
// message stream begins (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage).
//
// StartupReader accumulates bytes until one whole packet is present, checks the declared length
// against a limit before buffering (as Postgres does, 10000 bytes by default), and decodes it.
// Pure: no sockets, timers or logging.

import { Buffer } from 'node:buffer';

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
export const PROTOCOL_3_0 = 196608;

/** The newest protocol minor version the ambassador speaks. */
export const SUPPORTED_MINOR = 0;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: Buffer }
  | {
      kind: 'startup';
      major: number;
      minor: number;
      /** Ordinary parameters (user, database, application_name, options, DateStyle, ...). */
      params: Map<string, string>;
      /** `_pq_.*` protocol options, which the ambassador does not implement. */
      protocolOptions: string[];
    };

export class StartupError extends Error {
  readonly reason:
    | 'invalid-length'
    | 'unsupported-protocol'
    | 'malformed-parameters'
    | 'invalid-cancel'
    | 'too-many-parameters';

  constructor(reason: StartupError['reason'], message: string) {
    super(message);
    this.name = 'StartupError';
    this.reason = reason;
  }
}

export interface StartupLimits {
  /** Largest packet accepted, header included. */
  maxPacketSize: number;
  /** Most parameters accepted in a StartupMessage. */
  maxParameters: number;
}

export const DEFAULT_STARTUP_LIMITS: StartupLimits = { maxPacketSize: 10000, maxParameters: 1000 };

/** Splits a byte stream into startup-phase packets; split-tolerant, bounded. */
export class StartupReader {
  private pending: Buffer | null = null;

  constructor(private readonly limits: StartupLimits = DEFAULT_STARTUP_LIMITS) {}

  /** Bytes received but not yet part of a returned packet. */
  get buffered(): number {
    return this.pending?.length ?? 0;
  }

  /**
   * Adds bytes; returns a packet and the bytes after it, or null when more input is needed.
   * Throws StartupError on an invalid length or content.
   */
  push(chunk: Buffer): { packet: StartupPacket; rest: Buffer } | null {
    const data = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    if (data.length < 4) {
      this.pending = data;
      return null;
    }
    const length = data.readInt32BE(0);
    if (length < 8 || length > this.limits.maxPacketSize) {
      throw new StartupError('invalid-length', `invalid length of startup packet: ${length}`);
    }
    if (data.length < length) {
      this.pending = data;
      return null;
    }
    this.pending = null;
    return { packet: decodeStartupPacket(data.subarray(0, length), this.limits), rest: data.subarray(length) };
  }

  /** Drops buffered bytes (after a TLS upgrade, nothing read in plaintext may be used). */
  reset(): void {
    this.pending = null;
  }
}

/** Decodes one complete startup packet (length prefix included). */
export function decodeStartupPacket(packet: Buffer, limits: StartupLimits = DEFAULT_STARTUP_LIMITS): StartupPacket {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (packet.length !== 8) throw new StartupError('invalid-length', `invalid length ${packet.length} for an encryption request`);
    return { kind: code === SSL_REQUEST_CODE ? 'ssl' : 'gssenc' };
  }
  if (code === CANCEL_REQUEST_CODE) {
    // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
    if (packet.length < 16 || packet.length > 12 + 256) {
      throw new StartupError('invalid-cancel', `invalid length ${packet.length} for a cancel request`);
    }
    return { kind: 'cancel', processId: packet.readInt32BE(8), secretKey: Buffer.from(packet.subarray(12)) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) {
    throw new StartupError(
      'unsupported-protocol',
      `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.${SUPPORTED_MINOR}`,
    );
  }
  return { kind: 'startup', major, minor, ...decodeParameters(packet, limits.maxParameters) };
}

function decodeParameters(packet: Buffer, maxParameters: number): { params: Map<string, string>; protocolOptions: string[] } {
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  let pos = 8;
  const end = packet.length;
  for (;;) {
    if (pos >= end) throw new StartupError('malformed-parameters', 'invalid startup packet layout: expected terminator as last byte');
    if (packet[pos] === 0) break;
    const nameEnd = packet.indexOf(0, pos);
    if (nameEnd < 0 || nameEnd + 1 >= end) {
      throw new StartupError('malformed-parameters', 'invalid startup packet layout: parameter without a value');
    }
    const valueEnd = packet.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) throw new StartupError('malformed-parameters', 'invalid startup packet layout: unterminated value');
    const name = packet.toString('utf8', pos, nameEnd);
    const value = packet.toString('utf8', nameEnd + 1, valueEnd);
    if (name.startsWith('_pq_.')) protocolOptions.push(name);
    else params.set(name, value);
    if (params.size + protocolOptions.length > maxParameters) {
      throw new StartupError('too-many-parameters', `startup packet has more than ${maxParameters} parameters`);
    }
    pos = valueEnd + 1;
  }
  if (pos !== end - 1) throw new StartupError('malformed-parameters', 'invalid startup packet layout: expected terminator as last byte');
  return { params, protocolOptions };
}

/** Encodes a StartupMessage for protocol 3.0 (used toward upstream servers and by tests). */
export function encodeStartupMessage(params: Iterable<[string, string]>): Buffer {
  const parts: Buffer[] = [];
  let length = 4 + 4 + 1;
  for (const [name, value] of params) {
    const pair = Buffer.from(`${name}\0${value}\0`, 'utf8');
    parts.push(pair);
    length += pair.length;
  }
  const out = Buffer.allocUnsafe(length);
  out.writeInt32BE(length, 0);
  out.writeInt32BE(PROTOCOL_3_0, 4);
  let pos = 8;
  for (const part of parts) pos += part.copy(out, pos);
  out[pos] = 0;
  return out;
}

export function encodeSslRequest(): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeInt32BE(8, 0);
  out.writeInt32BE(SSL_REQUEST_CODE, 4);
  return out;
}

export function encodeCancelRequest(processId: number, secretKey: Buffer): Buffer {
  const out = Buffer.allocUnsafe(12 + secretKey.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeInt32BE(processId, 8);
  secretKey.copy(out, 12);
  return out;
}

// Incremental framer for typed protocol messages (everything after the startup phase): a 1-byte
// type, a 4-byte big-endian length that counts itself, then the payload.
//
// Invariants:
// - Input may be split anywhere; output is the same however it was split.
// - A message whose type the caller wants to inspect is delivered whole: as a subarray of the
//   chunk when it fits in one (no copy), or assembled into one buffer when it spans chunks. A
//   framer made `inPlace` makes no subarray for a message that lies whole in the chunk (header
//   included): its payload is null and the caller reads the chunk where the message lies.
// - A message the caller does not inspect is skipped without buffering its payload, so a 50 MB
//   DataRow flowing through never sits in memory; the caller forwards the raw chunk itself.
// - The declared length is checked against maxMessageSize before any byte of the payload is
//   buffered, so a client cannot make the ambassador allocate what it merely declared.
// - After a FramingError the stream is out of step: every later push throws the same error
//   (until reset()), so no message is ever cut from the bytes that follow a bad header.
// Pure: no sockets, timers or logging.

import { Buffer } from 'node:buffer';

export class FramingError extends Error {
  readonly reason: 'length-too-small' | 'message-too-large';
  readonly messageType: number;
  readonly declaredLength: number;

  constructor(reason: FramingError['reason'], messageType: number, declaredLength: number, limit: number) {
    const type = messageType >= 0x20 && messageType < 0x7f ? `'${String.fromCharCode(messageType)}'` : `0x${messageType.toString(16)}`;
    super(
      reason === 'length-too-small'
        ? `invalid message length ${declaredLength} for message type ${type}`
        : `message type ${type} declares ${declaredLength} bytes, over the limit of ${limit}`,
    );
    this.name = 'FramingError';
    this.reason = reason;
    this.messageType = messageType;
    this.declaredLength = declaredLength;
  }
}

/**
 * Called once per complete message. `payload` is the message body (without the 5-byte header)
 * when the type is inspected, otherwise null; `end` is the offset in the current chunk just
 * past the message. Return false to stop processing the current chunk: push() then returns
 * the offset of the first byte not consumed. With `inPlace`, an inspected message that lies
 * whole in the chunk (header included) comes with a null payload too: it is
 * chunk[end - length + 4, end). An inspected message whose payload is null therefore lies
 * whole in the chunk; one that began in an earlier chunk always comes with its payload.
 */
export type MessageHandler = (type: number, payload: Buffer | null, length: number, end: number) => boolean | void;

/** Where in the chunk the payload of a message delivered in place (null payload) begins: it ends at `end`. */
export function payloadStart(length: number, end: number): number {
  return end - length + 4;
}

/** A 256-entry table of message types whose payloads the caller needs to see. */
export function typeSet(types: string): Uint8Array {
  const set = new Uint8Array(256);
  for (let i = 0; i < types.length; i++) set[types.charCodeAt(i)] = 1;
  return set;
}

/** Every type inspected: the framer yields every message whole. */
export const ALL_TYPES: Uint8Array = new Uint8Array(256).fill(1);

const HEADER = 5;

export class Framer {
  private readonly header = Buffer.alloc(HEADER);
  private headerHave = 0;
  /** Payload bytes of the current message still to come; -1 when between messages. */
  private remaining = -1;
  private type = 0;
  private length = 0;
  private assembly: Buffer | null = null;
  private assembled = 0;
  private failure: FramingError | null = null;

  /**
   * `inPlace`: no subarray is made for an inspected message that lies whole in the chunk (see
   * MessageHandler). A subarray costs about as much as reading a small message does.
   */
  constructor(
    private readonly maxMessageSize: number,
    private inspect: Uint8Array,
    private readonly inPlace = false,
  ) {}

  /** Changes which types are delivered with their payload; takes effect at the next message. */
  setInspected(types: Uint8Array): void {
    this.inspect = types;
  }

  /** Back to a message boundary, whatever was pending (a new stream starts). */
  reset(): void {
    this.headerHave = 0;
    this.remaining = -1;
    this.assembly = null;
    this.assembled = 0;
    this.failure = null;
  }

  /** True when no partial message is pending. */
  get atBoundary(): boolean {
    return this.remaining < 0 && this.headerHave === 0;
  }

  /**
   * Takes the next whole message off the front of a queue of received chunks: its bytes are
   * removed from `chunks`, the rest stays queued, and its payload is a copy (it outlives the
   * chunk). Undefined when no whole message is queued yet. For exchanges read one message at a
   * time (authentication), not for forwarding.
   */
  shift(chunks: Buffer[]): { type: number; payload: Buffer } | undefined {
    while (chunks.length > 0) {
      const chunk = chunks[0]!;
      let message: { type: number; payload: Buffer } | undefined;
      const stopped = this.push(chunk, (type, payload, length, end) => {
        // In place, a message whole in the chunk comes without its payload: copied from there.
        const inChunk = payload === null && this.inPlace && this.inspect[type] !== 0;
        message = { type, payload: Buffer.from(inChunk ? chunk.subarray(payloadStart(length, end), end) : (payload ?? EMPTY)) };
        return false;
      });
      if (stopped >= chunk.length) chunks.shift();
      else chunks[0] = chunk.subarray(stopped);
      if (message !== undefined) return message;
    }
    return undefined;
  }

  /**
   * Consumes `chunk` from `start`, calling `onMessage` for each complete message. Returns the
   * offset where processing stopped (chunk.length unless the handler returned false).
   * Throws FramingError on a length below 4 or over the limit, and again on every later push.
   */
  push(chunk: Buffer, onMessage: MessageHandler, start = 0): number {
    if (this.failure !== null) throw this.failure;
    let pos = start;
    const end = chunk.length;
    while (pos < end) {
      if (this.remaining < 0) {
        let whole = false;
        if (this.headerHave === 0 && end - pos >= HEADER) {
          // The length read by hand: readInt32BE checks its offset, which the test above did.
          this.beginMessage(chunk[pos]!, (chunk[pos + 1]! << 24) | (chunk[pos + 2]! << 16) | (chunk[pos + 3]! << 8) | chunk[pos + 4]!);
          pos += HEADER;
          whole = this.inPlace;
        } else {
          const take = Math.min(HEADER - this.headerHave, end - pos);
          chunk.copy(this.header, this.headerHave, pos, pos + take);
          this.headerHave += take;
          pos += take;
          if (this.headerHave < HEADER) return pos;
          this.headerHave = 0;
          this.beginMessage(this.header[0]!, this.header.readInt32BE(1));
        }
        if (this.remaining === 0) {
          if (this.finish(onMessage, this.inspect[this.type] && !whole ? EMPTY : null, pos) === false) return pos;
          continue;
        }
        if (this.inspect[this.type]) {
          if (end - pos >= this.remaining) {
            const payload = whole ? null : chunk.subarray(pos, pos + this.remaining);
            pos += this.remaining;
            if (this.finish(onMessage, payload, pos) === false) return pos;
            continue;
          }
          this.assembly = Buffer.allocUnsafe(this.remaining);
          this.assembled = 0;
        }
      }
      const take = Math.min(this.remaining, end - pos);
      if (this.assembly !== null) {
        chunk.copy(this.assembly, this.assembled, pos, pos + take);
        this.assembled += take;
      }
      pos += take;
      this.remaining -= take;
      if (this.remaining === 0) {
        const payload = this.assembly;
        this.assembly = null;
        if (this.finish(onMessage, payload, pos) === false) return pos;
      }
    }
    return pos;
  }

  private beginMessage(type: number, length: number): void {
    if (length < 4) throw (this.failure = new FramingError('length-too-small', type, length, this.maxMessageSize));
    if (length - 4 > this.maxMessageSize) throw (this.failure = new FramingError('message-too-large', type, length, this.maxMessageSize));
    this.type = type;
    this.length = length;
    this.remaining = length - 4;
  }

  private finish(onMessage: MessageHandler, payload: Buffer | null, end: number): boolean | void {
    this.remaining = -1;
    return onMessage(this.type, payload, this.length, end);
  }
}

const EMPTY = Buffer.alloc(0);

// Fuzz properties of the two framers: the typed-message Framer (src/protocol/framer.ts) and the
// startup-phase StartupReader (src/protocol/startup.ts). Each compares what the code reports
// for a stream cut at random points with a model computed from the stream as a whole.

import assert from 'node:assert/strict';
import fc from 'fast-check';

import { ALL_TYPES, Framer, FramingError } from '../../src/protocol/framer.ts';
import {
  CANCEL_REQUEST_CODE,
  encodeCancelRequest,
  encodeSslRequest,
  encodeStartupMessage,
  GSSENC_REQUEST_CODE,
  SSL_REQUEST_CODE,
  StartupError,
  StartupReader,
  type StartupLimits,
  type StartupPacket,
} from '../../src/protocol/startup.ts';
import {
  bytes,
  chunkSizes,
  cstringText,
  encodeFrames,
  frame,
  fuzzProperty,
  int32Edge,
  mutations,
  mutateAll,
  outcome,
  split,
  type Frame,
  type FuzzProperty,
} from './fuzz.ts';

// ---------------------------------------------------------------------------------------------
// Framer

interface Seen {
  type: number;
  payload: string | null;
  length: number;
  /** Offset in the whole stream just past the message. */
  end: number;
}

const inspectSets = fc.oneof(
  fc.constant(ALL_TYPES),
  fc.constant(new Uint8Array(256)),
  fc.uint8Array({ minLength: 256, maxLength: 256, max: 1 }),
);

/** What a framer must report for `frames`, whatever the chunking. */
function model(frames: readonly Frame[], inspect: Uint8Array): Seen[] {
  let end = 0;
  return frames.map(({ type, payload }) => {
    end += 5 + payload.length;
    return { type, payload: inspect[type] ? payload.toString('hex') : null, length: payload.length + 4, end };
  });
}

interface Run {
  seen: Seen[];
  error: FramingError | null;
  /** Stream offset of the end of the chunk whose push threw. */
  errorChunkEnd: number;
}

/**
 * Pushes `chunks` as the callers do: a push that stops early (handler returned false) is resumed
 * at the offset it returned. After an error, the remaining chunks are pushed anyway: nothing may
 * come out. `inPlace`: the framer was made inPlace with these inspected types, and an inspected
 * message that comes without a payload is read from its chunk, where it must lie whole.
 */
function drive(framer: Framer, chunks: readonly Buffer[], stopAt: (index: number) => boolean = () => false, inPlace: Uint8Array | null = null): Run {
  const seen: Seen[] = [];
  let error: FramingError | null = null;
  let errorChunkEnd = -1;
  let base = 0;
  for (const chunk of chunks) {
    let pos = 0;
    try {
      while (pos < chunk.length) {
        const stopped = framer.push(chunk, (type, given, length, end) => {
          assert.ok(error === null, 'a message was delivered after a FramingError');
          let payload = given;
          if (inPlace !== null && given === null && inPlace[type]) {
            assert.ok(end - length - 1 >= pos && end <= chunk.length, 'a message read in place lies whole in its chunk, past where the push began');
            payload = chunk.subarray(end - length + 4, end);
          }
          seen.push({ type, payload: payload === null ? null : payload.toString('hex'), length, end: base + end });
          return !stopAt(seen.length - 1);
        }, pos);
        assert.ok(stopped > pos && stopped <= chunk.length, `push returned ${stopped} from ${pos} of ${chunk.length}`);
        if (stopped < chunk.length) assert.equal(base + stopped, seen.at(-1)!.end, 'a stopped push returns the end of the message that stopped it');
        pos = stopped;
      }
    } catch (err) {
      if (!(err instanceof FramingError)) throw err;
      if (error !== null) assert.equal(err, error, 'a push after a FramingError throws the same error');
      else errorChunkEnd = base + chunk.length;
      error = err;
    }
    base += chunk.length;
  }
  return { seen, error, errorChunkEnd };
}

const wellFormed = fc.record({
  frames: fc.array(frame, { maxLength: 24 }),
  inspect: inspectSets,
  sizes: chunkSizes,
  slack: fc.nat({ max: 64 }),
  inPlace: fc.boolean(),
});

const splitInvariance = fuzzProperty('framer', 'split-invariance', 150, wellFormed, ({ frames, inspect, sizes, slack, inPlace }) => {
  const largest = Math.max(0, ...frames.map((f) => f.payload.length));
  const framer = new Framer(largest + slack, inspect, inPlace);
  const stream = encodeFrames(frames);
  const run = drive(framer, split(stream, sizes), undefined, inPlace ? inspect : null);
  assert.equal(run.error, null);
  assert.deepEqual(run.seen, model(frames, inspect));
  assert.ok(framer.atBoundary, 'a stream of whole messages leaves the framer at a boundary');
});

const stopAndResume = fuzzProperty(
  'framer',
  'stop-and-resume',
  100,
  fc.record({ frames: fc.array(frame, { maxLength: 16 }), inspect: inspectSets, sizes: chunkSizes, stops: fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), inPlace: fc.boolean() }),
  ({ frames, inspect, sizes, stops, inPlace }) => {
    const framer = new Framer(1 << 20, inspect, inPlace);
    const run = drive(framer, split(encodeFrames(frames), sizes), (index) => stops[index % stops.length]!, inPlace ? inspect : null);
    assert.equal(run.error, null);
    assert.deepEqual(run.seen, model(frames, inspect));
  },
);

const switchInspected = fuzzProperty(
  'framer',
  'inspected-types-change-at-the-next-message',
  100,
  fc.record({ frames: fc.array(frame, { maxLength: 12 }), sets: fc.array(inspectSets, { minLength: 1, maxLength: 4 }), sizes: chunkSizes }),
  ({ frames, sets, sizes }) => {
    const framer = new Framer(1 << 20, sets[0]!);
    const seen: Array<string | null> = [];
    for (const chunk of split(encodeFrames(frames), sizes)) {
      framer.push(chunk, (_type, payload) => {
        seen.push(payload === null ? null : payload.toString('hex'));
        framer.setInspected(sets[seen.length % sets.length]!);
      });
    }
    const expected = frames.map(({ type, payload }, i) => (sets[i % sets.length]![type] ? payload.toString('hex') : null));
    assert.deepEqual(seen, expected);
  },
);

const badHeader = fc.record({
  frames: fc.array(frame, { maxLength: 6 }),
  type: fc.integer({ min: 0, max: 255 }),
  /** A length under 4, or how far over the limit the declared payload is. */
  length: fc.oneof(
    fc.oneof(fc.integer({ min: -0x80000000, max: 3 }), fc.constantFrom(-0x80000000, -1, 0, 1, 2, 3)).map((value) => ({ under: true, value })),
    fc.oneof(fc.integer({ min: 1, max: 100 }), fc.constant(0x7fffffff)).map((value) => ({ under: false, value })),
  ),
  max: fc.oneof(fc.constantFrom(0, 1, 100, 20_000), fc.integer({ min: 0, max: 1 << 16 })),
  trailer: bytes(32),
  inspect: inspectSets,
  sizes: chunkSizes,
});

const badLength = fuzzProperty('framer', 'bad-length-fails-at-its-header', 150, badHeader, ({ frames, type, length, max, trailer, inspect, sizes }) => {
  const good = frames.filter((f) => f.payload.length <= max);
  const declared = length.under ? length.value : Math.min(0x7fffffff, max + 4 + length.value);
  const header = Buffer.alloc(5);
  header[0] = type;
  header.writeInt32BE(declared, 1);
  const prefix = encodeFrames(good);
  const chunks = split(Buffer.concat([prefix, header, trailer]), sizes);
  const run = drive(new Framer(max, inspect), chunks);
  assert.deepEqual(run.seen, model(good, inspect), 'every message before the bad header is delivered, none after');
  assert.ok(run.error instanceof FramingError, 'a bad length throws FramingError');
  assert.equal(run.error.reason, length.under ? 'length-too-small' : 'message-too-large');
  assert.equal(run.error.declaredLength, declared);
  assert.equal(run.error.messageType, type);
  // Thrown by the push that completed the header: nothing of the declared payload is buffered.
  let chunkEnd = 0;
  for (const chunk of chunks) if ((chunkEnd += chunk.length) >= prefix.length + 5) break;
  assert.equal(run.errorChunkEnd, chunkEnd);
});

const mutatedStream = fuzzProperty(
  'framer',
  'mutated-stream-split-invariance',
  200,
  fc.record({ frames: fc.array(frame, { maxLength: 12 }), changes: mutations, max: fc.integer({ min: 0, max: 30_000 }), inspect: inspectSets, sizes: chunkSizes }),
  ({ frames, changes, max, inspect, sizes }) => {
    const stream = mutateAll(encodeFrames(frames), changes);
    const whole = drive(new Framer(max, inspect), [stream]);
    const pieces = drive(new Framer(max, inspect), split(stream, sizes));
    assert.deepEqual(pieces.seen, whole.seen);
    assert.equal(pieces.error?.reason, whole.error?.reason);
    assert.equal(pieces.error?.declaredLength, whole.error?.declaredLength);
    for (const seen of whole.seen) assert.ok(seen.length - 4 <= max, 'a delivered message is within the limit');
  },
);

// ---------------------------------------------------------------------------------------------
// StartupReader

const PROTOCOL_CODES = [
  SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE,
  (3 << 16) | 0, (3 << 16) | 1, (3 << 16) | 2, (3 << 16) | 99, (3 << 16) | 0xffff,
  (1 << 16) | 0, (2 << 16) | 0, (2 << 16) | 5, (4 << 16) | 0, 0, -1, 1234 << 16,
];

type StartupOutcome = { packet: StartupPacket } | { reason: StartupError['reason'] } | 'more';

/**
 * Feeds `stream` in chunks until a packet or an error. Checks on the way that bytes short of a
 * packet are all kept and stay under the limit, and that a packet comes with exactly the bytes
 * of its chunk that followed it.
 */
function readStartup(stream: Buffer, sizes: readonly number[], limits: StartupLimits): StartupOutcome {
  const reader = new StartupReader(limits);
  let fed = 0;
  for (const chunk of split(stream, sizes)) {
    fed += chunk.length;
    const result = outcome(() => reader.push(chunk), StartupError);
    if ('error' in result) return { reason: (result.error as StartupError).reason };
    if (result.value !== null) {
      assert.deepEqual(result.value.rest, stream.subarray(stream.readInt32BE(0), fed), 'rest is what followed the packet in its chunk');
      return { packet: result.value.packet };
    }
    assert.equal(reader.buffered, fed, 'bytes not yet a packet are all kept');
    assert.ok(reader.buffered < Math.max(4, limits.maxPacketSize), `the reader holds ${reader.buffered} bytes, limit ${limits.maxPacketSize}`);
  }
  return 'more';
}

/**
 * The parameter section as the protocol defines it, read by splitting at NULs: name/value pairs,
 * each NUL-terminated, then one more NUL as the last byte.
 */
function modelParameters(body: Buffer, maxParameters: number): { params: Map<string, string>; protocolOptions: string[] } | { reason: StartupError['reason'] } {
  const pieces = body.toString('latin1').split('\0').map((piece) => Buffer.from(piece, 'latin1').toString('utf8'));
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  for (let i = 0; ; i += 2) {
    if (i >= pieces.length - 1) return { reason: 'malformed-parameters' };
    const name = pieces[i]!;
    if (name === '') return i === pieces.length - 2 && pieces.at(-1) === '' ? { params, protocolOptions } : { reason: 'malformed-parameters' };
    if (i + 1 >= pieces.length - 1) return { reason: 'malformed-parameters' };
    if (name.startsWith('_pq_.')) protocolOptions.push(name);
    else params.set(name, pieces[i + 1]!);
    if (params.size + protocolOptions.length > maxParameters) return { reason: 'too-many-parameters' };
  }
}

/** What decoding one whole packet must give. */
function modelPacket(packet: Buffer, limits: StartupLimits): { packet: StartupPacket } | { reason: StartupError['reason'] } {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    return packet.length === 8 ? { packet: { kind: code === SSL_REQUEST_CODE ? 'ssl' : 'gssenc' } } : { reason: 'invalid-length' };
  }
  if (code === CANCEL_REQUEST_CODE) {
    if (packet.length < 16 || packet.length > 268) return { reason: 'invalid-cancel' };
    return { packet: { kind: 'cancel', processId: packet.readInt32BE(8), secretKey: Buffer.from(packet.subarray(12)) } };
  }
  if (code >>> 16 !== 3) return { reason: 'unsupported-protocol' };
  const parameters = modelParameters(packet.subarray(8), limits.maxParameters);
  if ('reason' in parameters) return parameters;
  return { packet: { kind: 'startup', major: 3, minor: code & 0xffff, ...parameters } };
}

const parameterList = fc.array(
  fc.tuple(fc.oneof(cstringText(12).filter((name) => name !== ''), fc.constantFrom('user', 'database', '_pq_.x', 'options')), cstringText(40)),
  { maxLength: 24 },
);

const startupRoundTrip = fuzzProperty(
  'startup',
  'round-trip-split',
  150,
  fc.record({ params: parameterList, maxParameters: fc.integer({ min: 0, max: 30 }), trailer: bytes(16), sizes: chunkSizes }),
  ({ params, maxParameters, trailer, sizes }) => {
    const packet = encodeStartupMessage(params);
    const limits = { maxPacketSize: Math.max(8, packet.length), maxParameters };
    const got = readStartup(Buffer.concat([packet, trailer]), sizes, limits);
    assert.deepEqual(got, modelPacket(packet, limits));
    if (params.length <= maxParameters && 'packet' in got && got.packet.kind === 'startup') {
      const named = new Map(params.filter(([name]) => !name.startsWith('_pq_.')));
      assert.deepEqual(got.packet.params, named, 'every parameter sent comes back (the last of a name wins)');
    }
  },
);

const otherPackets = fc.oneof(
  fc.constant(encodeSslRequest()),
  fc.constant(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])),
  fc.tuple(fc.integer({ min: -0x80000000, max: 0x7fffffff }), bytes(256, 4)).map(([pid, key]) => encodeCancelRequest(pid, key)),
);

const startupOthers = fuzzProperty('startup', 'encryption-and-cancel-requests', 100, fc.record({ packet: otherPackets, sizes: chunkSizes }), ({ packet, sizes }) => {
  const limits = { maxPacketSize: 10000, maxParameters: 1000 };
  assert.deepEqual(readStartup(packet, sizes, limits), modelPacket(packet, limits));
});

const hostilePacket = fc
  .record({
    length: fc.option(int32Edge, { nil: undefined }),
    code: fc.oneof(fc.constantFrom(...PROTOCOL_CODES), fc.integer({ min: -0x80000000, max: 0x7fffffff })),
    body: fc.oneof(
      parameterList.map((params) => encodeStartupMessage(params).subarray(8)),
      fc.integer({ min: 900, max: 2500 }).map((count) => Buffer.from(`${Array.from({ length: count }, (_, i) => `p${i}\0v\0`).join('')}\0`)),
      bytes(300),
    ),
    changes: fc.option(mutations, { nil: undefined }),
    maxPacketSize: fc.constantFrom(8, 16, 300, 10000, 40000),
    maxParameters: fc.constantFrom(0, 1, 1000),
    sizes: chunkSizes,
  })
  .map(({ length, code, body, changes, ...rest }) => {
    let packet: Buffer = Buffer.concat([Buffer.alloc(8), body]);
    packet.writeInt32BE(length ?? packet.length, 0);
    packet.writeInt32BE(code, 4);
    if (changes) packet = mutateAll(packet, changes);
    return { packet, ...rest };
  });

const startupHostile = fuzzProperty('startup', 'hostile-packets', 200, hostilePacket, ({ packet, maxPacketSize, maxParameters, sizes }) => {
  const limits = { maxPacketSize, maxParameters };
  const got = readStartup(packet, sizes, limits);
  if (packet.length < 4) return assert.equal(got, 'more');
  const declared = packet.readInt32BE(0);
  if (declared < 8 || declared > maxPacketSize) return assert.deepEqual(got, { reason: 'invalid-length' });
  if (packet.length < declared) return assert.equal(got, 'more');
  assert.deepEqual(got, modelPacket(packet.subarray(0, declared), limits));
});

export function framingProperties(): FuzzProperty[] {
  return [splitInvariance, stopAndResume, switchInspected, badLength, mutatedStream, startupRoundTrip, startupOthers, startupHostile];
}

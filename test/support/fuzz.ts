// Shared pieces of the property-based fuzzing (fast-check): the property record both budgets run
// (`npm test` runs each a few hundred times with a fixed seed, `npm run fuzz` for minutes with a
// fresh one), generators of well-formed protocol input, the mutators that break it the ways a
// hostile peer or a broken network would, and the chunking that splits a stream at random points.
//
// Every failure names its seed and path (fast-check's report) and the command that replays it:
// FUZZ_SEED / FUZZ_PATH in the unit tests, `npm run fuzz -- --only ... --seed S --size Z --path P`
// in the long run.

import assert from 'node:assert/strict';
import fc from 'fast-check';

export interface FuzzProperty {
  /** The module under test, e.g. 'framer'. */
  target: string;
  /** What the property asserts, e.g. 'split-invariance'. */
  name: string;
  /** Runs in the short budget (`npm test`). */
  runs: number;
  property: fc.IRawProperty<[unknown], false>;
}

/** A property over one generated value; `check` throws (assert) when the value breaks it. */
export function fuzzProperty<T>(target: string, name: string, runs: number, arbitrary: fc.Arbitrary<T>, check: (value: T) => void): FuzzProperty {
  return { target, name, runs, property: fc.property(arbitrary, check) as unknown as fc.IRawProperty<[unknown], false> };
}

/** FNV-1a of the text mixed with `base`: each property gets its own seed from one run seed. */
export function propertySeed(base: number, property: Pick<FuzzProperty, 'target' | 'name'>): number {
  let hash = 0x811c9dc5 ^ (base >>> 0);
  for (const char of `${property.target}/${property.name}`) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193);
  return hash | 0;
}

/**
 * The short budget: `property.runs` runs under node:test, seeded from FUZZ_SEED (default 0) so
 * `npm test` is reproducible. A failure names the counterexample and how to replay it: FUZZ_SEED
 * and FUZZ_PATH run straight to the failing case.
 */
export function checkShort(property: FuzzProperty): void {
  const base = Number(process.env['FUZZ_SEED'] ?? 0);
  const path = process.env['FUZZ_PATH'];
  const details = fc.check(property.property, { numRuns: property.runs, seed: propertySeed(base, property), ...(path ? { path } : {}) });
  if (!details.failed) return;
  const replay = `FUZZ_SEED=${base} FUZZ_PATH='${details.counterexamplePath ?? ''}' node --import tsx --test --test-name-pattern='${property.name}' <this test file>`;
  throw new Error(`${fc.defaultReportMessage(details)}\nreplay: ${replay}`, { cause: details.errorInstance });
}

// ---------------------------------------------------------------------------------------------
// Bytes, strings and chunking

export const bytes = (maxLength: number, minLength = 0): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ minLength, maxLength }).map((array) => Buffer.from(array));

/**
 * One code point, surrogates excepted, mostly from the lower planes. (fast-check's 'binary' unit
 * builds a table of every code point each time it is used: seconds per test file.)
 */
export const codePoint: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 4, arbitrary: fc.integer({ min: 0, max: 0x7ff }) },
    { weight: 2, arbitrary: fc.integer({ min: 0x800, max: 0xd7ff }) },
    { weight: 1, arbitrary: fc.integer({ min: 0xe000, max: 0x10ffff }) },
  )
  .map((code) => String.fromCodePoint(code));

/** Text that survives UTF-8 both ways (no lone surrogates) and holds no NUL. */
export const cstringText = (maxLength = 24): fc.Arbitrary<string> =>
  fc.string({ unit: fc.oneof(fc.constantFrom('a', 'Z', '_', '=', ',', ' ', 'é', '€', '😀'), codePoint), maxLength })
    .map((text) => text.replaceAll('\0', ''));

/** Chunk sizes, cycled over a stream: [] is one chunk, [1] byte at a time. */
export const chunkSizes: fc.Arbitrary<number[]> = fc.oneof(
  fc.constant<number[]>([]),
  fc.constant<number[]>([1]),
  fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 1, maxLength: 8 }),
  fc.array(fc.integer({ min: 1, max: 2048 }), { minLength: 1, maxLength: 4 }),
);

/** `data` cut into chunks of `sizes` (cycled); one chunk when `sizes` is empty. */
export function split(data: Buffer, sizes: readonly number[]): Buffer[] {
  if (sizes.length === 0) return [data];
  const chunks: Buffer[] = [];
  for (let pos = 0, i = 0; pos < data.length; i++) {
    const size = sizes[i % sizes.length]!;
    chunks.push(data.subarray(pos, pos + size));
    pos += size;
  }
  return chunks;
}

// ---------------------------------------------------------------------------------------------
// Mutators: how a hostile peer or a broken network changes bytes

/** Lengths that sit on the edges the decoders check (int32 as read by readInt32BE). */
export const INT32_EDGES = [
  0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 255, 256, 4096, 4097, 10000, 10001, 65535, 65536, 1 << 20, 0x7ffffffb, 0x7fffffff,
  -1, -2, -4, -8, -65536, -0x80000000,
];

export const int32Edge: fc.Arbitrary<number> = fc.oneof(fc.constantFrom(...INT32_EDGES), fc.integer({ min: -0x80000000, max: 0x7fffffff }));

export type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; data: Buffer }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'int32'; at: number; value: number }
  | { kind: 'splice'; at: number; from: number; count: number }
  | { kind: 'repeat'; at: number; count: number; times: number };

const position = fc.nat({ max: 1 << 16 });

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: position, value: fc.constantFrom(0, 0x2c, 0x3d, 0x7f, 0x80, 0xff) }),
  fc.record({ kind: fc.constant('insert' as const), at: position, data: bytes(8, 1) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({ kind: fc.constant('int32' as const), at: position, value: int32Edge }),
  fc.record({ kind: fc.constant('splice' as const), at: position, from: position, count: fc.integer({ min: 1, max: 32 }) }),
  fc.record({ kind: fc.constant('repeat' as const), at: position, count: fc.integer({ min: 1, max: 16 }), times: fc.integer({ min: 2, max: 2000 }) }),
);

export const mutations: fc.Arbitrary<Mutation[]> = fc.array(mutation, { minLength: 1, maxLength: 4 });

/** Applies one mutation; positions wrap around the input's length. */
export function mutate(data: Buffer, change: Mutation): Buffer {
  const at = change.at % (data.length + 1);
  switch (change.kind) {
    case 'flip':
    case 'set': {
      if (data.length === 0) return data;
      const out = Buffer.from(data);
      const index = at % data.length;
      out[index] = change.kind === 'flip' ? out[index]! ^ (1 << change.bit) : change.value;
      return out;
    }
    case 'insert':
      return Buffer.concat([data.subarray(0, at), change.data, data.subarray(at)]);
    case 'delete':
      return Buffer.concat([data.subarray(0, at), data.subarray(at + change.count)]);
    case 'truncate':
      return data.subarray(0, at);
    case 'int32': {
      const out = Buffer.concat([data, Buffer.alloc(Math.max(0, at + 4 - data.length))]);
      out.writeInt32BE(change.value, at);
      return out;
    }
    case 'splice': {
      const from = change.from % (data.length + 1);
      return Buffer.concat([data.subarray(0, at), data.subarray(from, from + change.count), data.subarray(at)]);
    }
    case 'repeat': {
      const piece = data.subarray(at, at + change.count);
      return Buffer.concat([data.subarray(0, at), ...Array<Buffer>(change.times).fill(piece), data.subarray(at)]);
    }
  }
}

export function mutateAll(data: Buffer, changes: readonly Mutation[]): Buffer {
  return changes.reduce(mutate, data);
}

/** Mutates text as latin1 bytes (SCRAM messages are byte strings). */
export function mutateText(text: string, changes: readonly Mutation[]): string {
  return mutateAll(Buffer.from(text, 'latin1'), changes).toString('latin1');
}

// ---------------------------------------------------------------------------------------------
// Typed protocol messages

export interface Frame {
  type: number;
  payload: Buffer;
}

/** Mostly small payloads, now and then one that spans many chunks. */
export const frame: fc.Arbitrary<Frame> = fc.record({
  type: fc.oneof(fc.constantFrom(0x44, 0x45, 0x51, 0x52, 0x53, 0x5a, 0x70), fc.integer({ min: 0, max: 255 })),
  payload: fc.oneof({ weight: 12, arbitrary: bytes(64) }, { weight: 1, arbitrary: bytes(20_000, 1000) }),
});

export function encodeFrames(frames: readonly Frame[]): Buffer {
  return Buffer.concat(
    frames.map(({ type, payload }) => {
      const header = Buffer.alloc(5);
      header[0] = type;
      header.writeInt32BE(payload.length + 4, 1);
      return Buffer.concat([header, payload]);
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Outcomes

/**
 * Runs `action`: its value, or the error when it is one of `allowed`; anything else fails the
 * property. A RangeError Node raised itself (a Buffer read past the end, code ERR_*) fails too:
 * decoders check lengths before reading.
 */
export function outcome<T>(action: () => T, ...allowed: Array<abstract new (...args: never[]) => Error>): { value: T } | { error: Error } {
  try {
    return { value: action() };
  } catch (err) {
    if (!allowed.some((type) => err instanceof type)) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (err instanceof RangeError && code !== undefined) assert.fail(`unchecked read: ${code}: ${err.message}`);
    return { error: err as Error };
  }
}

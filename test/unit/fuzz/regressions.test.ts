// What the fuzzing found, each pinned with the exact input that showed it (the counterexample
// fast-check shrank to, or the smallest input of the same shape).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RequestBuilder } from '../../../src/frontend/request-builder.ts';
import { Framer, FramingError } from '../../../src/protocol/framer.ts';
import { decodeBindNames, decodeParse } from '../../../src/protocol/frontend.ts';
import { createClassifier, EMPTY_FUNCTION_CATALOG } from '../../../src/router/classifier.ts';
import { readHints } from '../../../src/router/classifier-hints.ts';
import { literalShape } from '../../../src/router/literal-shape.ts';
import { SessionEffectsCache } from '../../../src/router/session-effects.ts';
import { tokenize } from '../../../src/router/sql-lexer.ts';
import { renamed } from '../../support/fuzz-decoders.ts';

test('framer: after a FramingError the bytes that follow are never framed (nothing is delivered, the error repeats)', () => {
  // framer/bad-length-fails-at-its-header: type 0, length 2^31-1, limit 0, then five zero bytes, one byte at a time.
  const framer = new Framer(0, new Uint8Array(256));
  const delivered: number[] = [];
  const push = (bytes: number[]): void => void framer.push(Buffer.from(bytes), (type) => void delivered.push(type));
  assert.throws(() => push([0, 0x7f, 0xff, 0xff, 0xff]), (err: unknown) => err instanceof FramingError && err.reason === 'message-too-large');
  // Before: a new "message" began at the next byte and failed as length-too-small, or was delivered.
  assert.throws(() => push([0, 0, 0, 0, 0]), (err: unknown) => err instanceof FramingError && err.reason === 'message-too-large');
  assert.throws(() => push([0x51, 0, 0, 0, 4]), (err: unknown) => err instanceof FramingError && err.declaredLength === 0x7fffffff);
  assert.deepEqual(delivered, []);
  framer.reset();
  push([0x51, 0, 0, 0, 4]);
  assert.deepEqual(delivered, [0x51], 'reset() starts a new stream');
});

test('framer: a mutated stream delivers nothing after its bad header (framer/mutated-stream-split-invariance)', () => {
  // An empty 'D' (44 00 00 00 04) with its first byte repeated and two zero bytes inserted in
  // front, fed one byte at a time: the header 00 00 44 44 44 declares 4 MB; before, the
  // 'D' that followed it was delivered.
  const stream = Buffer.from([0, 0, 0x44, 0x44, 0x44, 0x44, 0, 0, 0, 4]);
  const framer = new Framer(0, new Uint8Array(256));
  const delivered: number[] = [];
  const errors: string[] = [];
  for (const byte of stream) {
    try {
      framer.push(Buffer.from([byte]), (type) => void delivered.push(type));
    } catch (err) {
      assert.ok(err instanceof FramingError);
      errors.push(err.reason);
    }
  }
  assert.deepEqual(delivered, []);
  assert.deepEqual(errors, Array(6).fill('message-too-large'), 'the bad header and every byte after it');
});

test('frontend: a renamed Bind keeps a portal name that is not UTF-8 byte for byte', () => {
  // frontend/encode-decode-round-trip: portal 0x80, statement '', nothing after the names.
  const payload = Buffer.from([0x80, 0, 0]);
  const rebound = renamed(payload, 'pa_1');
  assert.deepEqual(rebound.subarray(5), Buffer.from([0x80, 0, ...Buffer.from('pa_1'), 0]), 'was EF BF BD (U+FFFD) in place of 0x80');
  assert.equal(decodeBindNames(rebound.subarray(5)).statement, 'pa_1');
});

test('frontend: a renamed Bind carries its own length', () => {
  // frontend/encode-decode-round-trip, on the first version that wrote the Bind in place.
  const payload = Buffer.from([0, 0, 0, 1, 0, 0]); // unnamed portal and statement, then the rest
  const rebound = renamed(payload, 'pa_2');
  assert.deepEqual(rebound.subarray(5), Buffer.from([0, ...Buffer.from('pa_2'), 0, 0, 1, 0, 0]));
  assert.equal(rebound.readInt32BE(1), rebound.length - 1);
  assert.deepEqual(decodeBindNames(rebound.subarray(5)), { portal: '', statement: 'pa_2', portalEnd: 0, restOffset: 6 });
});

test('sql-lexer: a long run of + and - is scanned once, not once per character', { timeout: 60_000 }, () => {
  // sql/one-megabyte-texts-finish: '+-' repeated did not finish (50 KB took over 5 minutes).
  const sql = '+-'.repeat(128 * 1024);
  const tokens = tokenize(sql);
  assert.equal(tokens.length, sql.length, 'every + and - split off a run is an operator of its own');
  assert.ok(tokens.every((token, i) => token.kind === 'operator' && token.text === sql[i]));
  assert.deepEqual(tokenize('a*+-*+-b').map((token) => token.text), ['a', '*+-*', '+', '-', 'b'], 'as scan.l splits it');
});

test('classifier: texts that share a literal shape but differ in a boolean number are classified apart', async () => {
  // classifier/texts-of-one-shape-classify-alike: "SET transaction_read_only = 0" then "= 42" shared the key
  // "SET transaction_read_only = ?" and the second got the first's set-read-write.
  const classifier = await createClassifier({ functions: EMPTY_FUNCTION_CATALOG });
  const fresh = async (sql: string) => (await createClassifier({ functions: EMPTY_FUNCTION_CATALOG })).classify(sql);
  const pairs: Array<[string, string]> = [
    ['SET transaction_read_only = 0', 'SET transaction_read_only = 42'],
    ['SET transaction_read_only = 1', 'SET transaction_read_only = 0'],
    ['SET default_transaction_read_only = 0', 'SET default_transaction_read_only = 1'],
    ['EXPLAIN (ANALYZE 0) DELETE FROM t', 'EXPLAIN (ANALYZE 1) DELETE FROM t'],
    ['EXPLAIN (ANALYSE 0) DELETE FROM t', 'EXPLAIN (ANALYSE 1) DELETE FROM t'],
    ['SET ambassador.retry = 1', 'SET ambassador.retry = 0'],
  ];
  for (const [first, second] of pairs) {
    assert.equal(literalShape(second), null, `${second} keeps its exact text as the key`);
    classifier.classify(first);
    assert.deepEqual(classifier.classify(second), await fresh(second), `${first} then ${second}`);
  }
  assert.equal(classifier.classify('EXPLAIN (ANALYZE 1) DELETE FROM t').route, 'write', 'EXPLAIN ANALYZE of a DELETE runs it');
  assert.equal(literalShape('select * from t where id = 7'), 'select * from t where id = ?', 'other texts still share their shape');
});

test('classifier: a statement nested thousands of levels deep is classified, not a stack overflow', async () => {
  // classifier/classifies-anything-and-stays-sane: "select not not ... not 1" (3748 NOTs, 15 KB,
  // under the parse limit) threw RangeError (Maximum call stack size exceeded) from the
  // recursive tree walk, out of classify() and the client's data handler.
  const classifier = await createClassifier({ functions: EMPTY_FUNCTION_CATALOG });
  assert.deepEqual(classifier.classify(`select ${'not '.repeat(3748)}1`), { route: 'read', reason: 'select', kind: 'query', statements: 1 });
  const deepWrite = classifier.classify(`select ${'not '.repeat(3748)}nextval(1) > 0`);
  assert.equal(deepWrite.reason, 'writing-function:nextval', 'a write at the bottom of the tree is still found');
});

test('classifier: texts that nest deeper than the parser\'s stack are not parsed, and the parser keeps working', async () => {
  // classifier/classifies-anything-and-stays-sane: "select - - ... nextval(1)" (8183 minus signs)
  // classified as parse-error or as a write depending on the caller's stack depth; 32 texts of
  // "select -+-+...x" (9000 operators) overflowed the stack inside the WASM parser, after which
  // every parse failed ("memory access out of bounds") and everything went to the primary.
  const classifier = await createClassifier({ functions: EMPTY_FUNCTION_CATALOG });
  for (let i = 0; i < 40; i++) {
    assert.deepEqual(classifier.classify(`select ${'-+'.repeat(4500)}x${i}`), { route: 'write', reason: 'too-deep', kind: 'query', statements: 0 });
    assert.equal(classifier.classify(`select ${i} from fresh_${i}`).reason, 'select', `a new text still parses after ${i + 1} deep ones`);
  }
  assert.equal(classifier.classify(`select ${'- '.repeat(8183)}nextval(1)`).reason, 'too-deep');
  assert.equal(classifier.classify(`select '${'-'.repeat(9000)}' from t`).reason, 'select', 'operators inside strings do not count');
});

test('classifier-hints: a -- comment ends at a carriage return, so a hint after the first token is not leading', () => {
  // classifier-hints/hints-come-from-the-comments-the-lexer-sees-first: the lexer (like the
  // server's) ends the comment at \r; readHints read on to the \n and took the trailing hint.
  assert.deepEqual(readHints('-- a\r*/-- ambassador:retry=off'), {});
  assert.deepEqual(readHints('-- note\rselect audit() -- ambassador:route=replica'), {});
  assert.deepEqual(readHints('-- ambassador:route=primary\rselect 1'), { hint: 'primary' }, 'a leading hint still counts');
  assert.deepEqual(readHints('-- a\r-- ambassador:route=replica\nselect 1'), { hint: 'replica' }, 'so does one on the next line after \\r');
});

test(
  'request-builder: a named Parse whose query is not UTF-8 reaches the server byte for byte',
  () => {
    // A client with client_encoding LATIN1 prepares "select 'café'" as statement s1.
    const query = Buffer.from("select 'caf\xe9'", 'latin1');
    const payload = Buffer.concat([Buffer.from('s1\0'), query, Buffer.from([0, 0, 0])]);
    const builder = new RequestBuilder(new SessionEffectsCache());
    builder.add(0x50, payload);
    const request = builder.add(0x53, Buffer.alloc(0));
    assert.ok(request !== null && request !== 'terminate' && request !== 'wait');
    const item = request.items[0]!;
    assert.equal(item.kind, 'parse');
    const sent = item.kind === 'parse' ? item.statement.parse.subarray(5) : Buffer.alloc(0);
    const queryStart = sent.indexOf(0) + 1;
    assert.deepEqual(sent.subarray(queryStart, sent.indexOf(0, queryStart)), query, 'the query bytes the client sent');
    assert.equal(decodeParse(sent).paramTypes.length, 2);
  },
);

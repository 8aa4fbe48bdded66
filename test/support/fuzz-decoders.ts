// Fuzz properties of the message decoders (src/protocol/frontend.ts, backend.ts), MD5 and
// SASLprep, and the client-side request builder (src/frontend/request-builder.ts).
//
// Decoders document one error: RangeError from the bounds-checked PayloadReader, which every
// caller turns into a protocol error (the forwarders catch around the framer's push, the
// upstream login catches FramingError and RangeError). So on any payload a decoder returns a
// value or throws that RangeError; a RangeError Node raises itself (an unchecked Buffer read)
// or any other exception fails. What an encoder writes, the decoder reads back, through a
// Framer fed at random split points.

import assert from 'node:assert/strict';
import fc from 'fast-check';

import {
  decodeAuthentication,
  decodeBackendKeyData,
  decodeDataRow,
  decodeErrorFields,
  decodeParameterStatus,
  decodeReadyForQuery,
  encodeAuthenticationCleartext,
  encodeAuthenticationMD5,
  encodeAuthenticationOk,
  encodeAuthenticationSASL,
  encodeAuthenticationSASLContinue,
  encodeAuthenticationSASLFinal,
  encodeBackendKeyData,
  encodeDataRow,
  encodeErrorResponse,
  encodeNoticeResponse,
  encodeParameterStatus,
  encodeReadyForQuery,
  summarizeError,
  type ErrorFields,
} from '../../src/protocol/backend.ts';
import { ALL_TYPES, Framer } from '../../src/protocol/framer.ts';
import {
  decodeBindNames,
  decodeParse,
  decodePasswordMessage,
  decodeSASLInitialResponse,
  decodeTarget,
  encodeParse,
  encodePasswordMessage,
  encodeSASLInitialResponse,
  encodeTarget,
  FrontendType,
} from '../../src/protocol/frontend.ts';
import { isMd5PasswordHash, md5AuthResponse, md5PasswordHash, verifyMd5Response } from '../../src/protocol/md5.ts';
import { saslprep, SaslprepError, saslprepOrRaw } from '../../src/protocol/saslprep.ts';
import { frameMessage } from '../../src/protocol/writer.ts';
import { Outgoing } from '../../src/frontend/outgoing.ts';
import { messageOf, RequestBuilder, textsOf, type Request } from '../../src/frontend/request-builder.ts';
import { CLOSED_STATEMENT, MISSING_STATEMENT, REFUSED_PARSE } from '../../src/frontend/statements.ts';
import { SessionEffectsCache } from '../../src/router/session-effects.ts';
import { bytes, chunkSizes, codePoint, cstringText, fuzzProperty, mutations, mutateAll, outcome, split, type FuzzProperty } from './fuzz.ts';

/** The one message in `message`, read back through a Framer fed in chunks. */
function reframe(message: Buffer, sizes: readonly number[]): { type: number; payload: Buffer } {
  const framer = new Framer(1 << 24, ALL_TYPES);
  const seen: Array<{ type: number; payload: Buffer }> = [];
  for (const chunk of split(message, sizes)) framer.push(chunk, (type, payload) => void seen.push({ type, payload: Buffer.from(payload!) }));
  assert.equal(seen.length, 1, 'an encoder writes exactly one whole message');
  return seen[0]!;
}

const noNul = (text: string): string => text.replaceAll('\0', '');
/** Text that may hold NULs, which the writer drops. */
const text = (maxLength = 24): fc.Arbitrary<string> => fc.oneof({ weight: 4, arbitrary: cstringText(maxLength) }, { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength }) });

// ---------------------------------------------------------------------------------------------
// Frontend messages

const oids = fc.array(fc.integer({ min: -0x80000000, max: 0x7fffffff }), { maxLength: 6 }).map((list) => {
  const out = Buffer.alloc(2 + 4 * list.length);
  out.writeInt16BE(list.length, 0);
  list.forEach((oid, i) => out.writeInt32BE(oid, 2 + 4 * i));
  return out;
});

type FrontendCase =
  | { kind: 'password'; password: string }
  | { kind: 'sasl-initial'; mechanism: string; data: Buffer }
  | { kind: 'parse'; name: string; query: string; paramTypes: Buffer }
  | { kind: 'bind'; portal: Buffer; statement: Buffer; rest: Buffer; rebound: string }
  | { kind: 'target'; type: 0x44 | 0x43; target: 'S' | 'P'; name: string };

const nulFree = (maxLength: number): fc.Arbitrary<Buffer> => bytes(maxLength).map((b) => Buffer.from(b.filter((byte) => byte !== 0)));

const frontendCase: fc.Arbitrary<FrontendCase> = fc.oneof(
  fc.record({ kind: fc.constant('password' as const), password: text(64) }),
  fc.record({ kind: fc.constant('sasl-initial' as const), mechanism: text(), data: bytes(200) }),
  fc.record({ kind: fc.constant('parse' as const), name: text(), query: text(200), paramTypes: oids }),
  fc.record({ kind: fc.constant('bind' as const), portal: nulFree(12), statement: nulFree(12), rest: bytes(40), rebound: text() }),
  fc.record({ kind: fc.constant('target' as const), type: fc.constantFrom(0x44 as const, 0x43 as const), target: fc.constantFrom('S' as const, 'P' as const), name: text() }),
);

/** The wire message for a case (Bind has no encoder: it is forwarded as the client wrote it). */
function encodeFrontend(c: FrontendCase): Buffer {
  switch (c.kind) {
    case 'password':
      return encodePasswordMessage(c.password);
    case 'sasl-initial':
      return encodeSASLInitialResponse(c.mechanism, c.data);
    case 'parse':
      return encodeParse(c.name, c.query, c.paramTypes);
    case 'bind':
      return frameMessage(FrontendType.Bind, Buffer.concat([c.portal, Buffer.from([0]), c.statement, Buffer.from([0]), c.rest]));
    case 'target':
      return encodeTarget(c.type, c.target, c.name);
  }
}

const frontendRoundTrip = fuzzProperty('frontend', 'encode-decode-round-trip', 200, fc.record({ c: frontendCase, sizes: chunkSizes }), ({ c, sizes }) => {
  const { type, payload } = reframe(encodeFrontend(c), sizes);
  switch (c.kind) {
    case 'password':
      assert.equal(type, FrontendType.Password);
      return assert.equal(decodePasswordMessage(payload), noNul(c.password));
    case 'sasl-initial':
      return assert.deepEqual(decodeSASLInitialResponse(payload), { mechanism: noNul(c.mechanism), data: c.data });
    case 'parse':
      assert.equal(type, FrontendType.Parse);
      return assert.deepEqual(decodeParse(payload), { name: noNul(c.name), query: noNul(c.query), paramTypes: c.paramTypes });
    case 'bind': {
      const names = decodeBindNames(payload);
      assert.deepEqual(names, {
        portal: c.portal.toString('utf8'),
        statement: c.statement.toString('utf8'),
        portalEnd: c.portal.length,
        restOffset: c.portal.length + c.statement.length + 2,
      });
      // The portal and everything after the names travel as the client wrote them.
      const rebound = reframe(renamed(payload, noNul(c.rebound)), sizes);
      assert.equal(rebound.type, FrontendType.Bind);
      return assert.deepEqual(rebound.payload, Buffer.concat([c.portal, Buffer.from(`\0${noNul(c.rebound)}\0`), c.rest]));
    }
    case 'target':
      assert.equal(type, c.type);
      return assert.deepEqual(decodeTarget(payload), { kind: c.target, name: noNul(c.name) });
  }
});

/** The Bind `payload` aimed at the statement `name`, as the transaction forwarder writes it. */
export function renamed(payload: Buffer, name: string): Buffer {
  const chunk = frameMessage(FrontendType.Bind, payload);
  const { portalEnd, restOffset } = decodeBindNames(chunk, null, 5);
  const out = new Outgoing();
  out.addRenamedBind({ chunk, start: 0, end: chunk.length, portalEnd, restOffset }, Buffer.from(`${name}\0`));
  return out.take()!;
}

const hostilePayload = (valid: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> =>
  fc.oneof(bytes(64), fc.tuple(valid, mutations).map(([payload, changes]) => mutateAll(payload, changes)));

const frontendHostile = fuzzProperty(
  'frontend',
  'hostile-payloads-throw-only-range-error',
  300,
  hostilePayload(frontendCase.map((c) => encodeFrontend(c).subarray(5))),
  (payload) => {
    outcome(() => decodePasswordMessage(payload), RangeError);
    const initial = outcome(() => decodeSASLInitialResponse(payload), RangeError);
    if ('value' in initial) assert.ok(initial.value.data.length <= payload.length);
    const parse = outcome(() => decodeParse(payload), RangeError);
    if ('value' in parse) assert.equal(parse.value.paramTypes.length, 2 + 4 * parse.value.paramTypes.readUInt16BE(0));
    const target = outcome(() => decodeTarget(payload), RangeError);
    if ('value' in target) assert.ok(target.value.kind === 'S' || target.value.kind === 'P');
    const rebound = outcome(() => renamed(payload, 'pa_x'), RangeError);
    if ('value' in rebound) assert.equal(decodeBindNames(rebound.value.subarray(5)).statement, 'pa_x');
  },
);

// ---------------------------------------------------------------------------------------------
// Backend messages

const errorFields: fc.Arbitrary<ErrorFields> = fc.record(
  {
    severity: fc.constantFrom('ERROR', 'FATAL', 'PANIC', 'WARNING', 'NOTICE', 'DEBUG', 'INFO', 'LOG'),
    code: fc.stringMatching(/^[0-9A-Z]{5}$/),
    message: text(80),
    detail: text(40),
    hint: text(40),
  },
  { requiredKeys: ['severity', 'code', 'message'] },
);

type BackendCase =
  | { kind: 'auth'; message: Buffer; expected: ReturnType<typeof decodeAuthentication> }
  | { kind: 'error' | 'notice'; fields: ErrorFields }
  | { kind: 'parameter'; name: string; value: string }
  | { kind: 'key'; processId: number; secret: number }
  | { kind: 'row'; values: Array<string | null> }
  | { kind: 'ready'; status: 'I' | 'T' | 'E' };

const mechanism = text(20).map(noNul).filter((name) => name !== '');

const backendCase: fc.Arbitrary<BackendCase> = fc.oneof(
  fc.constantFrom<BackendCase>(
    { kind: 'auth', message: encodeAuthenticationOk(), expected: { code: 0 } },
    { kind: 'auth', message: encodeAuthenticationCleartext(), expected: { code: 3 } },
  ),
  bytes(4, 4).map((salt): BackendCase => ({ kind: 'auth', message: encodeAuthenticationMD5(salt), expected: { code: 5, salt } })),
  fc.array(mechanism, { maxLength: 32 }).map((list): BackendCase => ({ kind: 'auth', message: encodeAuthenticationSASL(list), expected: { code: 10, mechanisms: list } })),
  bytes(300).map((data): BackendCase => ({ kind: 'auth', message: encodeAuthenticationSASLContinue(data), expected: { code: 11, data } })),
  bytes(300).map((data): BackendCase => ({ kind: 'auth', message: encodeAuthenticationSASLFinal(data), expected: { code: 12, data } })),
  fc.record({ kind: fc.constantFrom('error' as const, 'notice' as const), fields: errorFields }),
  fc.record({ kind: fc.constant('parameter' as const), name: text(), value: text() }),
  fc.record({ kind: fc.constant('key' as const), processId: fc.integer({ min: -0x80000000, max: 0x7fffffff }), secret: fc.integer({ min: -0x80000000, max: 0x7fffffff }) }),
  fc.record({ kind: fc.constant('row' as const), values: fc.array(fc.option(text(30), { nil: null }), { maxLength: 20 }) }),
  fc.record({ kind: fc.constant('ready' as const), status: fc.constantFrom('I' as const, 'T' as const, 'E' as const) }),
);

function encodeBackend(c: BackendCase): Buffer {
  switch (c.kind) {
    case 'auth':
      return c.message;
    case 'error':
      return encodeErrorResponse(c.fields);
    case 'notice':
      return encodeNoticeResponse(c.fields);
    case 'parameter':
      return encodeParameterStatus(c.name, c.value);
    case 'key':
      return encodeBackendKeyData(c.processId, c.secret);
    case 'row':
      return encodeDataRow(c.values);
    case 'ready':
      return encodeReadyForQuery(c.status);
  }
}

const backendRoundTrip = fuzzProperty('backend', 'encode-decode-round-trip', 200, fc.record({ c: backendCase, sizes: chunkSizes }), ({ c, sizes }) => {
  const { payload } = reframe(encodeBackend(c), sizes);
  switch (c.kind) {
    case 'auth':
      return assert.deepEqual(decodeAuthentication(payload), c.expected);
    case 'error':
    case 'notice': {
      const { severity, code, message, detail, hint } = c.fields;
      const expected = new Map<string, string>([['S', severity], ['V', severity], ['C', code], ['M', noNul(message)]]);
      if (detail) expected.set('D', noNul(detail));
      if (hint) expected.set('H', noNul(hint));
      assert.deepEqual(decodeErrorFields(payload), expected);
      return assert.deepEqual(summarizeError(payload), { severity, code, message: noNul(message) });
    }
    case 'parameter':
      return assert.deepEqual(decodeParameterStatus(payload), { name: noNul(c.name), value: noNul(c.value) });
    case 'key': {
      const secretKey = Buffer.alloc(4);
      secretKey.writeInt32BE(c.secret);
      return assert.deepEqual(decodeBackendKeyData(payload), { processId: c.processId, secretKey });
    }
    case 'row':
      return assert.deepEqual(decodeDataRow(payload), c.values);
    case 'ready':
      return assert.equal(decodeReadyForQuery(payload), c.status);
  }
});

const backendHostile = fuzzProperty(
  'backend',
  'hostile-payloads-throw-only-range-error',
  300,
  hostilePayload(backendCase.map((c) => encodeBackend(c).subarray(5))),
  (payload) => {
    const auth = outcome(() => decodeAuthentication(payload), RangeError);
    if ('value' in auth && auth.value.code === 5) assert.equal((auth.value as { salt: Buffer }).salt.length, 4);
    if ('value' in auth && auth.value.code === 10) assert.ok((auth.value as { mechanisms: string[] }).mechanisms.length <= 32);
    outcome(() => decodeErrorFields(payload), RangeError);
    const summary = summarizeError(payload);
    assert.ok(typeof summary.severity === 'string' && typeof summary.code === 'string' && typeof summary.message === 'string');
    outcome(() => decodeParameterStatus(payload), RangeError);
    const key = outcome(() => decodeBackendKeyData(payload), RangeError);
    if ('value' in key) assert.ok(key.value.secretKey.length >= 4 && key.value.secretKey.length <= 256);
    const row = outcome(() => decodeDataRow(payload), RangeError);
    if ('value' in row) assert.ok(row.value.length <= 0x7fff);
    const ready = outcome(() => decodeReadyForQuery(payload), RangeError);
    if ('value' in ready) assert.ok(['I', 'T', 'E'].includes(ready.value));
  },
);

// ---------------------------------------------------------------------------------------------
// MD5 and SASLprep

const md5RoundTrip = fuzzProperty(
  'md5',
  'response-verifies-and-mutants-do-not',
  200,
  fc.record({ user: text(), password: text(), salt: bytes(4, 4), changes: mutations }),
  ({ user, password, salt, changes }) => {
    const stored = md5PasswordHash(user, password);
    assert.ok(isMd5PasswordHash(stored));
    const response = md5AuthResponse(user, password, salt);
    assert.match(response, /^md5[0-9a-f]{32}$/);
    assert.equal(md5AuthResponse(null, stored, salt), response, 'the stored hash answers as the password does');
    assert.equal(verifyMd5Response(stored, salt, response), true);
    const mutant = mutateAll(Buffer.from(response, 'latin1'), changes).toString('latin1');
    assert.equal(verifyMd5Response(stored, salt, mutant), mutant === response);
  },
);

const md5Hostile = fuzzProperty(
  'md5',
  'hostile-inputs',
  200,
  fc.record({ stored: fc.oneof(fc.string({ maxLength: 40 }), fc.stringMatching(/^md5[0-9a-f]{32}$/)), salt: bytes(8), response: fc.string({ unit: codePoint, maxLength: 40 }) }),
  ({ stored, salt, response }) => {
    assert.equal(typeof verifyMd5Response(stored, salt, response), 'boolean');
    const answer = outcome(() => md5AuthResponse('user', stored, salt), RangeError);
    assert.equal('error' in answer, salt.length !== 4, 'only a salt that is not 4 bytes is refused');
  },
);

const SASLPREP_SPECIALS = ['\u00a0', '\u00ad', '\u200b', '\u2000', '\u05d0', '\u0627', '\u0661', 'a', '1', '\ufb01', '\u2168', '\u0301', '\ufffd', '\u{e0001}', '\u0340', '\ud800', '\udc00', '\u{1f600}', '\u0221', '\u3000'];

const saslprepText = fc.string({ unit: fc.oneof(fc.constantFrom(...SASLPREP_SPECIALS), codePoint), maxLength: 16 });

const saslprepProperty = fuzzProperty('saslprep', 'prepares-or-refuses-and-bytes-agree-with-text', 300, saslprepText, (input) => {
  const prepared = outcome(() => saslprep(input), SaslprepError);
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(input)) assert.deepEqual(prepared, { value: input }, 'ASCII passes unchanged');
  const raw = saslprepOrRaw(input);
  assert.equal(raw, 'value' in prepared ? prepared.value : input);
  if (!/[\ud800-\udfff]/.test(input.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ''))) {
    assert.deepEqual(saslprepOrRaw(Buffer.from(input, 'utf8')), Buffer.from(raw, 'utf8'), 'bytes and text prepare alike');
  }
});

const saslprepBytes = fuzzProperty('saslprep', 'invalid-utf8-bytes-pass-raw', 200, bytes(24), (input) => {
  const result = saslprepOrRaw(input);
  let valid = true;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(input);
  } catch {
    valid = false;
  }
  if (!valid) assert.equal(result, input);
});

// ---------------------------------------------------------------------------------------------
// Request builder (client messages -> requests under transaction pooling)

const SQL = ['select 1', 'SET search_path = x', 'BEGIN', 'COMMIT', "select pg_advisory_lock(1)", 'LISTEN ch', 'insert into t values ($1)', 'DISCARD ALL', '', "select 'é'"];
const NAMES = ['', 's1', 's2', 'ß', 'pa_x'];
const PORTALS = ['', 'p1'];

type ClientMessage = { type: number; payload: Buffer };

const clientMessage: fc.Arbitrary<ClientMessage> = fc.oneof(
  fc.record({ name: fc.constantFrom(...NAMES), query: fc.constantFrom(...SQL), paramTypes: oids }).map(({ name, query, paramTypes }) => ({ type: 0x50, payload: encodeParse(name, query, paramTypes).subarray(5) })),
  fc.record({ portal: fc.constantFrom(...PORTALS), statement: fc.constantFrom(...NAMES, 'unknown'), rest: bytes(16) }).map(({ portal, statement, rest }) => ({
    type: 0x42,
    payload: Buffer.concat([Buffer.from(`${portal}\0${statement}\0`), rest]),
  })),
  fc.record({ type: fc.constantFrom(0x44 as const, 0x43 as const), target: fc.constantFrom('S' as const, 'P' as const), name: fc.constantFrom(...NAMES, ...PORTALS) }).map(({ type, target, name }) => ({
    type,
    payload: encodeTarget(type, target, name).subarray(5),
  })),
  fc.record({ portal: fc.constantFrom(...PORTALS, 'p2'), rows: fc.nat() }).map(({ portal, rows }) => {
    const payload = Buffer.alloc(portal.length + 5);
    payload.write(portal);
    payload.writeInt32BE(rows, portal.length + 1);
    return { type: 0x45, payload };
  }),
  fc.constantFrom(0x53, 0x48, 0x63).map((type) => ({ type, payload: Buffer.alloc(0) })),
  fc.constantFrom(...SQL).map((sql) => ({ type: 0x51, payload: Buffer.from(`${sql}\0`) })),
  fc.record({ type: fc.constantFrom(0x46, 0x64, 0x66, 0x21, 0x00, 0xff), payload: bytes(16) }),
);

const COMPLETING = new Set([0x53, 0x51, 0x46]);
const ENDING = new Set([0x53, 0x51, 0x46, 0x48, 0x64, 0x63, 0x66]);

/**
 * Checks one finished request against the messages it was built from. `prepared`: the names the
 * client has prepared ('' for the unnamed statement) and not closed (nor, for '', dropped by a
 * Query; nor, named, dropped by DISCARD ALL), with their texts, before this request; `portals`:
 * the text each portal was bound to; both kept up to date.
 */
function checkRequest(request: Request, messages: readonly ClientMessage[], prepared: Map<string, string>, portals: Map<string, string>, cacheUnnamed: boolean): void {
  const discardAll = (): void => {
    for (const name of prepared.keys()) if (name !== '') prepared.delete(name);
  };
  // After a refused Parse the server skips the rest of the request: what it would change is not kept.
  let beforeSkipped = null as { prepared: Map<string, string>; portals: Map<string, string> } | null;
  const last = messages.at(-1)!;
  assert.equal(request.items.length, messages.length, 'one item per client message');
  assert.equal(request.completes, COMPLETING.has(last.type));
  if (messages.some((m) => m.type === 0x46)) assert.equal(request.texts, null, 'a FunctionCall runs unknown SQL');
  request.items.forEach((item, i) => {
    const { type, payload } = messages[i]!;
    // A Parse of a name the client holds is refused (42P05) and the name keeps its text.
    let refused = false;
    if (type === 0x50) {
      const parse = decodeParse(payload);
      refused = parse.name !== '' && prepared.has(parse.name);
      if (refused) beforeSkipped ??= { prepared: new Map(prepared), portals: new Map(portals) };
      else prepared.set(parse.name, parse.query);
    }
    // A Bind or Describe of a statement the client has not got (the unnamed one, never parsed,
    // closed or dropped by a Query; or a name of the ambassador's form it did not prepare) names
    // one nothing has: the server answers 26000.
    const target = type === 0x44 || type === 0x43 ? decodeTarget(payload) : null;
    const statement = type === 0x42 ? payload.toString('utf8').split('\0')[1] : target?.kind === 'S' ? target.name : null;
    const missing = (statement === '' || statement?.startsWith('pa_') === true) && !prepared.has(statement!);
    if (type === 0x51) prepared.delete('');
    if (type === 0x51 && payload.toString('utf8', 0, payload.length - 1) === 'DISCARD ALL') discardAll();
    if (type === 0x42) {
      const [portal, bound] = payload.toString('utf8').split('\0');
      const text = prepared.get(bound!);
      if (text === undefined) portals.delete(portal!);
      else portals.set(portal!, text);
    }
    if (type === 0x43 && target!.kind === 'P') portals.delete(target!.name);
    if (type === 0x45 && portals.get(payload.toString('utf8', 0, payload.indexOf(0))) === 'DISCARD ALL') discardAll();
    if (refused) {
      assert.deepEqual(item.kind === 'raw' && messageOf(item), REFUSED_PARSE, 'a refused Parse goes on as one the server refuses');
    } else if (item.kind === 'raw') {
      const closed = type === 0x43 && target!.kind === 'S' ? target!.name : null;
      // A Close of a statement the client prepared closes nothing (it may be shared), nor does
      // one of an unnamed statement it has not got; of any other name it goes to the server as
      // it came (the client's own unnamed one too, unless shared).
      const had = closed !== null && prepared.delete(closed);
      const closesNothing = closed !== null && (closed === '' ? !had || cacheUnnamed : had || closed.startsWith('pa_'));
      assert.deepEqual(messageOf(item), closesNothing ? encodeTarget(0x43, 'S', CLOSED_STATEMENT) : frameMessage(type, payload), 'raw messages go on as they came');
      assert.ok(type !== 0x44 || target!.kind === 'P', 'a Describe of a statement is never sent as it came');
    } else if (item.kind === 'bind') {
      assert.equal(type, 0x42);
      assert.deepEqual(messageOf(item).subarray(5), payload);
      assert.equal(item.serverName === MISSING_STATEMENT, missing, `a Bind of ${JSON.stringify(statement)}`);
      if (item.rename === null) assert.deepEqual(messageOf(item), frameMessage(type, payload), 'sent as it came');
    } else if (item.kind === 'parse') {
      const parse = decodeParse(payload);
      assert.equal(item.unnamed, parse.name === '');
      if (parse.name === '') assert.ok(cacheUnnamed, 'the unnamed statement is shared only under pool.cacheUnnamedStatements');
      assert.deepEqual(decodeParse(item.statement.parse.subarray(5)), { name: item.statement.serverName, query: parse.query, paramTypes: parse.paramTypes });
    } else {
      assert.equal(type, 0x44);
      assert.deepEqual(target!.kind, 'S');
      assert.equal(item.serverName === MISSING_STATEMENT, missing, `a Describe of ${JSON.stringify(statement)}`);
    }
  });
  if (beforeSkipped === null) return;
  for (const [model, kept] of [[prepared, beforeSkipped.prepared], [portals, beforeSkipped.portals]] as const) {
    model.clear();
    for (const [key, value] of kept) model.set(key, value);
  }
}

/**
 * What the forwarder sends of a request's messages that go as they came (raw, and Binds not
 * renamed), through Outgoing: the same bytes, in order, whatever chunks they lie in.
 */
function checkOutgoing(request: Request): void {
  const out = new Outgoing();
  const expected: Buffer[] = [];
  for (const item of request.items) {
    if (item.kind !== 'raw' && (item.kind !== 'bind' || item.rename !== null)) continue;
    out.add(item.chunk, item.start, item.end);
    expected.push(Buffer.from(messageOf(item)));
  }
  assert.deepEqual(out.take(), expected.length === 0 ? null : Buffer.concat(expected));
}

const builderWellFormed = fuzzProperty(
  'request-builder',
  'well-formed-messages-become-requests',
  200,
  // Each message handed over as a range of one chunk they all lie in, without a payload (as the
  // forwarder frames them), or alone, framed by the builder (a message split across reads).
  fc.tuple(fc.array(fc.tuple(clientMessage, fc.boolean()), { maxLength: 30 }), fc.boolean()),
  ([handed, cacheUnnamed]) => {
  const builder = new RequestBuilder(new SessionEffectsCache(), undefined, { cacheUnnamed });
  const prepared = new Map<string, string>();
  const portals = new Map<string, string>();
  const chunk = Buffer.concat(handed.map(([m]) => frameMessage(m.type, m.payload)));
  let since: ClientMessage[] = [];
  let at = 0;
  for (const [message, inChunk] of handed) {
    since.push(message);
    const end = at + 5 + message.payload.length;
    const add = () => (inChunk ? builder.add(message.type, null, chunk, at, end) : builder.add(message.type, message.payload));
    // A statement a drop forgot is named once the drop is answered (the forwarder's readHeldInput).
    let result = add();
    if (result === 'wait') {
      builder.dropsAnswered();
      result = add();
    }
    at = end;
    if (ENDING.has(message.type)) {
      assert.ok(result !== null && result !== 'terminate' && result !== 'wait', `type 0x${message.type.toString(16)} ends a request`);
      checkRequest(result, since, prepared, portals, cacheUnnamed);
      checkOutgoing(result);
      assert.equal(builder.pending, false);
      since = [];
    } else {
      assert.equal(result, null);
      assert.equal(builder.pending, true);
    }
  }
  assert.equal(builder.add(0x58, Buffer.alloc(0)), 'terminate');
  },
);

/** What a builder made of a message: enough to tell two builders' readings apart. */
function reading(result: Request | 'terminate' | 'wait' | null): unknown {
  if (result === null || result === 'terminate' || result === 'wait') return result;
  const items = result.items.map((item) =>
    item.kind === 'raw' || item.kind === 'bind' ? [item.kind, messageOf(item).toString('hex')] : [item.kind, item.kind === 'parse' ? item.statement.serverName : item.serverName],
  );
  return { items, texts: textsOf(result), completes: result.completes, local: result.local, effects: result.effects };
}

const builderHostile = fuzzProperty(
  'request-builder',
  'hostile-messages-throw-only-range-error',
  300,
  // Bytes before and after each message (mostly NULs, which end names): a message read where it
  // lies in a chunk must be read as the same message alone, never outside its range.
  fc.array(
    fc.tuple(clientMessage, fc.option(mutations, { nil: undefined }), fc.uint8Array({ maxLength: 12, max: 2 }), fc.uint8Array({ minLength: 1, maxLength: 12, max: 2 })),
    { maxLength: 12 },
  ),
  (messages) => {
    const alone = new RequestBuilder(new SessionEffectsCache());
    const inChunk = new RequestBuilder(new SessionEffectsCache());
    for (const [{ type, payload }, changes, before, after] of messages) {
      const body = changes ? mutateAll(payload, changes) : payload;
      const result = outcome(() => alone.add(type, body), RangeError);
      const message = frameMessage(type, body);
      const chunk = Buffer.concat([before, message, after]);
      const read = outcome(() => inChunk.add(type, null, chunk, before.length, before.length + message.length), RangeError);
      assert.equal('error' in read, 'error' in result);
      if ('error' in result || 'error' in read) return; // the session ends with a protocol violation
      assert.deepEqual(reading(read.value), reading(result.value));
    }
  },
);

export function decoderProperties(): FuzzProperty[] {
  return [
    frontendRoundTrip,
    frontendHostile,
    backendRoundTrip,
    backendHostile,
    md5RoundTrip,
    md5Hostile,
    saslprepProperty,
    saslprepBytes,
    builderWellFormed,
    builderHostile,
  ];
}

// Fuzz properties of SCRAM-SHA-256 (src/protocol/scram.ts), both sides. Messages come from a
// small grammar of the attributes (right, wrong, missing, repeated, out of place) and from byte
// mutations of real exchanges. Invariants: any failure is a ScramError with a named reason; a
// message is accepted exactly when a model written from RFC 5802 and PostgreSQL's rules accepts
// it; a genuine exchange (ScramClient against ScramServer, random password) always succeeds, and
// any change to the client's proof or the server's signature always fails.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';

import {
  buildScramVerifier,
  certificateChannelBindingHash,
  SCRAM_MAX_ITERATIONS,
  SCRAM_MAX_MESSAGE_BYTES,
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  ScramClient,
  ScramError,
  ScramServer,
  type ChannelBinding,
  type ScramErrorReason,
} from '../../src/protocol/scram.ts';
import { bytes, codePoint, fuzzProperty, mutations, mutateAll, mutateText, outcome, type FuzzProperty } from './fuzz.ts';

const REASONS = new Set<ScramErrorReason>([
  'malformed-client-first', 'malformed-client-final', 'malformed-server-first', 'malformed-server-final',
  'message-too-long', 'bad-gs2-header', 'bad-attribute', 'unsupported-extension',
  'bad-mechanism', 'channel-binding-mismatch', 'channel-binding-downgrade', 'unsupported-channel-binding',
  'nonce-mismatch', 'bad-iterations', 'bad-proof', 'bad-server-signature', 'server-error', 'out-of-order', 'bad-certificate',
]);

/** The step's result, or the ScramError it threw (checked to carry a known reason and a message). */
function scram<T>(step: () => T): { value: T } | { error: ScramError } {
  const result = outcome(step, ScramError);
  if ('value' in result) return result;
  const error = result.error as ScramError;
  assert.ok(REASONS.has(error.reason), `unknown reason ${error.reason}`);
  assert.ok(error.message.length > 0);
  return { error };
}

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;
const printable = (minLength = 1, maxLength = 24): fc.Arbitrary<string> =>
  fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).filter((c) => c !== 0x2c).map((c) => String.fromCharCode(c)), minLength, maxLength });
/** Latin1 text of any byte but NUL-rich and comma-rich, as a hostile peer sends. */
const anyText = (maxLength = 24): fc.Arbitrary<string> =>
  fc.string({ unit: fc.oneof(fc.constantFrom(',', '=', '\0', 'r', 'n', 'p', '\xff', '\x80'), fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 })), maxLength });
/** Canonical base64 check, written independently of the module's. */
const isCanonicalBase64 = (text: string): boolean =>
  text.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(text) && Buffer.from(text, 'base64').toString('base64') === text;

interface Exchange {
  password: string;
  salt: Buffer;
  iterations: number;
  binding: ChannelBinding | null;
  /** Client side: bind (PLUS), say 'y' (could bind, server did not offer), or plain 'n'. */
  clientMode: 'plus' | 'y' | 'n';
  clientNonce: string;
  serverNonce: string;
  username: string;
}

const exchange: fc.Arbitrary<Exchange> = fc
  .record({
    password: fc.string({ unit: fc.oneof(fc.constantFrom('\u00a0', '\u00ad', '\u05d0', 'é', '\0', '\ud800'), codePoint), maxLength: 20 }),
    salt: bytes(32, 1),
    iterations: fc.integer({ min: 1, max: 16 }),
    binding: fc.option(bytes(64, 20).map((data): ChannelBinding => ({ type: 'tls-server-end-point', data })), { nil: null }),
    plus: fc.boolean(),
    clientNonce: printable(),
    serverNonce: printable(),
    username: fc.string({ maxLength: 12 }),
  })
  // With binding data the client binds or sends plain 'n'; without, it may still say 'y' (it could bind).
  .map(({ plus, ...rest }) => ({ ...rest, clientMode: rest.binding ? (plus ? 'plus' : 'n') : plus ? 'y' : 'n' }));

function parties(e: Exchange): { client: ScramClient; server: ScramServer } {
  const verifier = buildScramVerifier(e.password, { salt: e.salt, iterations: e.iterations });
  const client = new ScramClient({
    password: e.password,
    channelBinding: e.clientMode === 'plus' ? e.binding : null,
    channelBindingSupported: e.clientMode === 'y',
    nonce: e.clientNonce,
    username: e.username,
  });
  const mechanism = e.clientMode === 'plus' ? SCRAM_SHA_256_PLUS : SCRAM_SHA_256;
  return { client, server: new ScramServer({ verifier, channelBinding: e.binding, mechanism, nonce: e.serverNonce }) };
}

/** A genuine exchange up to the client-final-message. */
function upToClientFinal(e: Exchange): { client: ScramClient; server: ScramServer; clientFirst: Buffer; serverFirst: Buffer; clientFinal: Buffer } {
  const { client, server } = parties(e);
  const clientFirst = client.clientFirst();
  const serverFirst = server.handleClientFirst(clientFirst);
  const clientFinal = client.handleServerFirst(serverFirst);
  return { client, server, clientFirst, serverFirst, clientFinal };
}

// ---------------------------------------------------------------------------------------------
// Genuine exchanges

const genuineSucceeds = fuzzProperty('scram', 'genuine-exchange-succeeds', 100, exchange, (e) => {
  const { client, server, serverFirst, clientFinal } = upToClientFinal(e);
  assert.ok(serverFirst.toString('latin1').startsWith(`r=${e.clientNonce}${e.serverNonce},s=${e.salt.toString('base64')},i=${e.iterations}`));
  client.verifyServerFinal(server.handleClientFinal(clientFinal));
  assert.equal(server.state, 'done');
  assert.equal(client.state, 'done');
});

const mutatedProofFails = fuzzProperty(
  'scram',
  'mutated-proof-fails-with-bad-proof',
  100,
  fc.record({ e: exchange, flips: fc.array(fc.tuple(fc.integer({ min: 0, max: 31 }), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 4 }) }),
  ({ e, flips }) => {
    const { server, clientFinal } = upToClientFinal(e);
    const text = clientFinal.toString('latin1');
    const at = text.lastIndexOf(',p=');
    const proof = Buffer.from(text.slice(at + 3), 'base64');
    for (const [index, bit] of flips) proof[index]! ^= 1 << bit;
    fc.pre(proof.toString('base64') !== text.slice(at + 3));
    const result = scram(() => server.handleClientFinal(latin1(`${text.slice(0, at)},p=${proof.toString('base64')}`)));
    assert.ok('error' in result && result.error.reason === 'bad-proof', 'a changed proof fails as a wrong password');
    assert.equal(server.state, 'failed');
  },
);

const mutatedFinalFails = fuzzProperty('scram', 'mutated-client-final-fails', 150, fc.record({ e: exchange, changes: mutations }), ({ e, changes }) => {
  const { server, clientFinal } = upToClientFinal(e);
  const mutant = mutateAll(clientFinal, changes);
  fc.pre(!mutant.equals(clientFinal));
  assert.ok('error' in scram(() => server.handleClientFinal(mutant)), 'a changed client-final never authenticates');
  assert.equal(server.state, 'failed');
});

// ---------------------------------------------------------------------------------------------
// Server side: hostile client-first and client-final

const GS2_FLAGS = ['n', 'y', 'p=tls-server-end-point', 'p=tls-unique', 'p=', '', 'x', 'n=', 'P=tls-server-end-point', 'yy'];

const clientFirstMessage = fc
  .record({
    flag: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...GS2_FLAGS) }, { weight: 1, arbitrary: anyText(8) }),
    authzid: fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('a=user', 'a=', 'x') }),
    user: fc.oneof({ weight: 6, arbitrary: fc.string({ maxLength: 8 }).map((name) => `n=${name.replaceAll(',', '=2C')}`) }, { weight: 1, arbitrary: fc.constantFrom('m=ext', 'x=1', '', 'n') }),
    nonce: fc.oneof({ weight: 6, arbitrary: printable().map((n) => `r=${n}`) }, { weight: 1, arbitrary: fc.constantFrom('r=', 'r', 's=abc', 'r=a b') }, { weight: 1, arbitrary: anyText(8).map((n) => `r=${n}`) }),
    extensions: fc.array(fc.oneof(fc.constantFrom('x=1', 'p=1', '=', '', '1=2', 'ab=c'), anyText(6)), { maxLength: 3 }),
    padding: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 4000, max: 5000 }) }),
    changes: fc.option(mutations, { nil: undefined, freq: 4 }),
  })
  .map(({ flag, authzid, user, nonce, extensions, padding, changes }) => {
    let text = [`${flag},${authzid},${user}`, nonce, ...extensions].join(',');
    if (padding > 0) text += `,x=${'a'.repeat(padding)}`;
    return changes ? mutateText(text, changes) : text;
  });

/** RFC 5802 client-first-message as PostgreSQL accepts it, for `mechanism` with `binding`. */
function acceptsClientFirst(text: string, plus: boolean, binding: boolean): boolean {
  if (text.length === 0 || text.length > SCRAM_MAX_MESSAGE_BYTES || text.includes('\0')) return false;
  const match = /^([^,]*),,n=[^,]*,r=([^,]*)((?:,[A-Za-z]=[^,]*)*)$/.exec(text);
  if (!match || !PRINTABLE.test(match[2]!)) return false;
  const flag = match[1]!;
  if (flag === 'n') return !plus;
  if (flag === 'y') return !plus && !binding;
  return flag === 'p=tls-server-end-point' && plus;
}

const serverCase = fc.record({
  message: clientFirstMessage,
  binding: fc.boolean(),
  plus: fc.boolean(),
  serverNonce: printable(),
});

const verifier = buildScramVerifier('pencil', { salt: Buffer.from('salt'), iterations: 2 });
const BINDING: ChannelBinding = { type: 'tls-server-end-point', data: Buffer.alloc(32, 7) };

const hostileClientFirst = fuzzProperty('scram-server', 'client-first-accepted-iff-well-formed', 300, serverCase, ({ message, binding, plus, serverNonce }) => {
  const usePlus = plus && binding;
  const server = new ScramServer({ verifier, channelBinding: binding ? BINDING : null, mechanism: usePlus ? SCRAM_SHA_256_PLUS : SCRAM_SHA_256, nonce: serverNonce });
  const result = scram(() => server.handleClientFirst(latin1(message)));
  assert.equal('value' in result, acceptsClientFirst(message, usePlus, binding), `accepted: ${'value' in result}`);
  if ('value' in result) {
    const clientNonce = /,r=([^,]*)/.exec(message)![1];
    assert.equal(result.value.toString('latin1'), `r=${clientNonce}${serverNonce},s=${Buffer.from('salt').toString('base64')},i=2`);
    assert.equal(server.state, 'expect-client-final');
  } else {
    assert.equal(server.state, 'failed');
  }
});

const clientFinalMessage = fc.record({
  binding: fc.constantFrom('right', 'other-header', 'random', 'missing'),
  nonce: fc.constantFrom('right', 'client-only', 'random', 'missing', 'longer'),
  extensions: fc.array(fc.oneof(fc.constantFrom('x=1', 'p=1', '=', '', 'c=biws'), anyText(6)), { maxLength: 2 }),
  proof: fc.oneof(bytes(32, 32).map((p) => p.toString('base64')), fc.constantFrom('', 'AAAA', 'not base64', 'QQ=')),
  changes: fc.option(mutations, { nil: undefined, freq: 3 }),
});

const hostileClientFinal = fuzzProperty(
  'scram-server',
  'hostile-client-final-fails',
  200,
  fc.record({ e: exchange, final: clientFinalMessage }),
  ({ e, final }) => {
    const { server, clientFinal } = upToClientFinal(e);
    const genuine = clientFinal.toString('latin1');
    const [c, r] = genuine.split(',');
    const fullNonce = r!.slice(2);
    const binding = { right: c!, 'other-header': 'c=eSws', random: 'c=AAAA', missing: '' }[final.binding];
    const nonce = { right: r!, 'client-only': `r=${e.clientNonce}`, random: 'r=abcdef', missing: '', longer: `r=${fullNonce}x` }[final.nonce];
    let text = [binding, nonce, ...final.extensions, `p=${final.proof}`].filter((field, i) => i >= 2 || field !== '').join(',');
    if (final.changes) text = mutateText(text, final.changes);
    const result = scram(() => server.handleClientFinal(latin1(text)));
    assert.ok('error' in result, 'a proof not computed from the password never passes');
    const wellFormed = final.changes === undefined && final.extensions.length === 0 && final.proof.length === 44;
    if (wellFormed && final.binding === 'right' && final.nonce === 'right') assert.equal(result.error.reason, 'bad-proof');
    if (wellFormed && final.binding === 'right' && final.nonce !== 'right' && final.nonce !== 'missing') assert.equal(result.error.reason, 'nonce-mismatch');
  },
);

const serverOrder = fuzzProperty(
  'scram-server',
  'calls-out-of-order-fail-for-good',
  150,
  fc.record({ e: exchange, ops: fc.array(fc.tuple(fc.constantFrom('first', 'final'), fc.constantFrom('genuine', 'random')), { maxLength: 6 }), junk: anyText(40) }),
  ({ e, ops, junk }) => {
    const { client, server } = parties(e);
    let clientFirst: Buffer | null = null;
    let serverFirst: Buffer | null = null;
    let failed = false;
    for (const [step, data] of ops) {
      const before = server.state;
      const expected = step === 'first' ? 'expect-client-first' : 'expect-client-final';
      const genuine = data === 'genuine';
      let message = latin1(junk);
      if (genuine && step === 'first') message = clientFirst ??= client.clientFirst();
      if (genuine && step === 'final' && serverFirst !== null && client.state === 'expect-server-first') message = client.handleServerFirst(serverFirst);
      const result = scram(() => (step === 'first' ? server.handleClientFirst(message) : server.handleClientFinal(message)));
      if (failed || before !== expected) assert.ok('error' in result && result.error.reason === 'out-of-order', `${step} in state ${before}`);
      if ('error' in result) {
        failed = true;
        assert.equal(server.state, 'failed');
      } else if (step === 'first' && genuine) serverFirst = result.value;
    }
  },
);

const serverMechanism = fuzzProperty('scram-server', 'only-offered-mechanisms-construct', 100, fc.record({ mechanism: fc.oneof(fc.constantFrom(SCRAM_SHA_256, SCRAM_SHA_256_PLUS, 'SCRAM-SHA-1', 'scram-sha-256', ''), anyText(20)), binding: fc.boolean() }), ({ mechanism, binding }) => {
  const result = scram(() => new ScramServer({ verifier, channelBinding: binding ? BINDING : null, mechanism }));
  assert.equal('value' in result, mechanism === SCRAM_SHA_256 || (mechanism === SCRAM_SHA_256_PLUS && binding));
  if ('error' in result) assert.equal(result.error.reason, 'bad-mechanism');
});

// ---------------------------------------------------------------------------------------------
// Client side: a hostile or broken server

const CLIENT_NONCE = 'rOprNGfwEbeRWgbNEkqO';
const FAST_MAX_ITERATIONS = 64;
const ITERATION_TEXTS = ['0', '-1', '00', '01', '4096', '65', '1000000', '1000001', '2147483647', '99999999999', '4294967297', '1e3', '0x10', ' 1', '1 ', '', 'NaN', 'Infinity', '+1', '1.0'];

const serverFirstMessage = fc
  .record({
    nonce: fc.oneof(
      printable(1, 16).map((suffix) => `${CLIENT_NONCE}${suffix}`),
      fc.constantFrom(CLIENT_NONCE, CLIENT_NONCE.slice(0, 10), `${CLIENT_NONCE},x`, `${CLIENT_NONCE} x`, `${CLIENT_NONCE}\x7f`, `${CLIENT_NONCE}${'a'.repeat(5000)}`, ''),
      printable(),
    ),
    salt: fc.oneof(bytes(32, 1).map((salt) => salt.toString('base64')), fc.constantFrom('', 'QQ=', 'QR==', '====', 'A', 'c2FsdA', 'c2FsdA==\n', '!!!!')),
    iterations: fc.oneof(fc.integer({ min: 1, max: 80 }).map(String), fc.constantFrom(...ITERATION_TEXTS), fc.stringMatching(/^[0-9]{1,12}$/)),
    extra: fc.constantFrom('', ',x=1', ',', ',m=1', ',i=1'),
    order: fc.constantFrom('rsi', 'sri', 'ris', 'mrsi'),
    changes: fc.option(mutations, { nil: undefined, freq: 4 }),
  })
  .map(({ nonce, salt, iterations, extra, order, changes }) => {
    const fields: Record<string, string> = { r: `r=${nonce}`, s: `s=${salt}`, i: `i=${iterations}`, m: 'm=ext' };
    const text = [...order].map((key) => fields[key]).join(',') + extra;
    return changes ? mutateText(text, changes) : text;
  });

/** A server-first-message the client must accept (RFC 5802 with PostgreSQL's limits). */
function acceptsServerFirst(text: string, maxIterations: number): boolean {
  if (text.length === 0 || text.length > SCRAM_MAX_MESSAGE_BYTES || text.includes('\0')) return false;
  const [r, s, i, ...more] = text.split(',');
  if (more.length > 0 || !r?.startsWith('r=') || !s?.startsWith('s=') || !i?.startsWith('i=')) return false;
  const nonce = r.slice(2);
  if (!nonce.startsWith(CLIENT_NONCE) || nonce.length === CLIENT_NONCE.length || !PRINTABLE.test(nonce)) return false;
  if (s === 's=' || !isCanonicalBase64(s.slice(2))) return false;
  return /^[1-9][0-9]*$/.test(i.slice(2)) && i.length <= 12 && Number(i.slice(2)) <= maxIterations;
}

const hostileServerFirst = fuzzProperty('scram-client', 'server-first-accepted-iff-well-formed', 300, serverFirstMessage, (message) => {
  const client = new ScramClient({ password: 'pencil', nonce: CLIENT_NONCE, maxIterations: FAST_MAX_ITERATIONS });
  client.clientFirst();
  const result = scram(() => client.handleServerFirst(latin1(message)));
  assert.equal('value' in result, acceptsServerFirst(message, FAST_MAX_ITERATIONS), `accepted: ${'value' in result}`);
  assert.equal(client.state, 'value' in result ? 'expect-server-final' : 'failed');
});

const iterationCap = fuzzProperty(
  'scram-client',
  'iteration-count-over-the-cap-is-refused-before-pbkdf2',
  100,
  fc.oneof(fc.integer({ min: SCRAM_MAX_ITERATIONS + 1, max: 0x7fffffff }).map(String), fc.constantFrom('0', '-5', '1e9', '99999999999', '4294967297', '1000001', '0x100')),
  (iterations) => {
    const client = new ScramClient({ password: 'pencil', nonce: CLIENT_NONCE });
    client.clientFirst();
    const result = scram(() => client.handleServerFirst(latin1(`r=${CLIENT_NONCE}xyz,s=c2FsdA==,i=${iterations}`)));
    assert.ok('error' in result && result.error.reason === 'bad-iterations');
  },
);

const serverFinalCase = fc.record({
  e: exchange,
  kind: fc.constantFrom('mutated', 'error', 'random-signature', 'extra-field', 'raw'),
  changes: mutations,
  junk: anyText(60),
  signature: bytes(32, 32),
});

const hostileServerFinal = fuzzProperty('scram-client', 'changed-server-final-fails', 200, serverFinalCase, ({ e, kind, changes, junk, signature }) => {
  const { client, server, clientFinal } = upToClientFinal(e);
  const genuine = server.handleClientFinal(clientFinal);
  const message = {
    mutated: () => mutateAll(genuine, changes),
    error: () => latin1(`e=${junk}`),
    'random-signature': () => latin1(`v=${signature.toString('base64')}`),
    'extra-field': () => latin1(`${genuine.toString('latin1')},x=${junk}`),
    raw: () => latin1(junk),
  }[kind]();
  const result = scram(() => client.verifyServerFinal(message));
  assert.equal('value' in result, message.equals(genuine), 'only the genuine server signature passes');
  if (kind === 'error' && !junk.includes('\0') && junk.length < SCRAM_MAX_MESSAGE_BYTES) assert.equal('error' in result && result.error.reason, 'server-error');
});

const clientOrder = fuzzProperty(
  'scram-client',
  'calls-out-of-order-fail-for-good',
  100,
  fc.array(fc.constantFrom('client-first', 'server-first', 'server-final'), { maxLength: 5 }),
  (ops) => {
    const client = new ScramClient({ password: 'pencil', nonce: CLIENT_NONCE, maxIterations: 4 });
    const expected: Record<string, string> = { 'client-first': 'initial', 'server-first': 'expect-server-first', 'server-final': 'expect-server-final' };
    let failed = false;
    for (const op of ops) {
      const before = client.state;
      const result = scram(() =>
        op === 'client-first' ? client.clientFirst()
        : op === 'server-first' ? client.handleServerFirst(latin1(`r=${CLIENT_NONCE}x,s=c2FsdA==,i=2`))
        : client.verifyServerFinal(latin1(`v=${Buffer.alloc(32).toString('base64')}`)),
      );
      if (failed || before !== expected[op]) assert.ok('error' in result && result.error.reason === 'out-of-order');
      if ('error' in result) failed = true;
      if (failed) assert.equal(client.state, 'failed');
    }
  },
);

// ---------------------------------------------------------------------------------------------
// tls-server-end-point: the DER walk over a certificate's signature algorithm

const FIXTURES = new URL('../fixtures/scram/', import.meta.url);
const CERTIFICATES = readdirSync(FIXTURES)
  .filter((name) => name.endsWith('.pem'))
  .map((name) => new X509Certificate(readFileSync(new URL(name, FIXTURES))).raw);

const certificateHash = fuzzProperty(
  'scram',
  'certificate-binding-hash-or-bad-certificate',
  100,
  fc.record({ index: fc.nat({ max: CERTIFICATES.length - 1 }), changes: fc.option(mutations, { nil: undefined, freq: 5 }) }),
  ({ index, changes }) => {
    const der = changes ? mutateAll(CERTIFICATES[index]!, changes) : CERTIFICATES[index]!;
    const result = scram(() => certificateChannelBindingHash(der));
    if ('value' in result) assert.ok([28, 32, 48, 64].includes(result.value.length), `a hash of ${result.value.length} bytes`);
    else assert.equal(result.error.reason, 'bad-certificate');
  },
);

export function scramProperties(): FuzzProperty[] {
  return [
    genuineSucceeds,
    mutatedProofFails,
    mutatedFinalFails,
    hostileClientFirst,
    hostileClientFinal,
    serverOrder,
    serverMechanism,
    hostileServerFirst,
    iterationCap,
    hostileServerFinal,
    clientOrder,
    certificateHash,
  ];
}

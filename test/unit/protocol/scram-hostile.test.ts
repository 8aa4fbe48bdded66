// Malformed, truncated, reordered and random SCRAM messages on both sides: every failure must be a
// ScramError with the expected reason, never a TypeError/RangeError, and never a success where the
// message was changed.

import { seededRandom } from '../../support/random.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildScramVerifier,
  ScramClient,
  ScramError,
  ScramServer,
  type ChannelBinding,
  type ScramServerOptions,
} from '../../../src/protocol/scram.ts';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');
const VERIFIER = buildScramVerifier('pencil', { salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), iterations: 16 });
const BINDING: ChannelBinding = { type: 'tls-server-end-point', data: Buffer.alloc(32, 7) };
const CLIENT_NONCE = 'rOprNGfwEbeRWgbNEkqO';
const SERVER_NONCE = 'S3rv3rN0nc3';

function scramError(reason: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof ScramError, `expected ScramError, got ${err instanceof Error ? err.stack : String(err)}`);
    assert.equal(err.reason, reason, err.message);
    return true;
  };
}

/** Calls `fn`; returns its result, or null when it threw a ScramError. Anything else fails the test. */
function scramOrResult<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch (err) {
    assert.ok(err instanceof ScramError, `expected ScramError, got ${err instanceof Error ? err.stack : String(err)}`);
    return null;
  }
}


const server = (opts: Partial<ScramServerOptions> = {}): ScramServer =>
  new ScramServer({ verifier: VERIFIER, nonce: SERVER_NONCE, ...opts });

/** A valid exchange's messages, computed by ScramClient with fixed nonces. */
function validExchange(): { clientFirst: string; serverFirst: string; clientFinal: string; serverFinal: string } {
  const client = new ScramClient({ password: 'pencil', nonce: CLIENT_NONCE });
  const scram = server();
  const clientFirst = client.clientFirst();
  const serverFirst = scram.handleClientFirst(clientFirst);
  const clientFinal = client.handleServerFirst(serverFirst);
  const serverFinal = scram.handleClientFinal(clientFinal);
  client.verifyServerFinal(serverFinal);
  return { clientFirst: clientFirst.toString('latin1'), serverFirst: serverFirst.toString('latin1'), clientFinal: clientFinal.toString('latin1'), serverFinal: serverFinal.toString('latin1') };
}
const VALID = validExchange();

const CLIENT_FIRST_CASES: [string, string, Partial<ScramServerOptions>?][] = [
  ['', 'malformed-client-first'],
  ['n,,n=,r=ab\0c', 'malformed-client-first'],
  ['n', 'bad-gs2-header'],
  ['n,', 'bad-gs2-header'],
  ['n,,', 'malformed-client-first'],
  [',,n=,r=abc', 'bad-gs2-header'],
  ['x,,n=,r=abc', 'bad-gs2-header'],
  ['nn,,n=,r=abc', 'bad-gs2-header'],
  ['N,,n=,r=abc', 'bad-gs2-header'],
  ['n,a=admin,n=,r=abc', 'bad-gs2-header'],
  ['n,a=,n=,r=abc', 'bad-gs2-header'],
  ['p=tls-server-end-point,,n=,r=abc', 'channel-binding-mismatch'],
  ['p=tls-server-end-point,,n=,r=abc', 'channel-binding-mismatch', { channelBinding: BINDING, mechanism: 'SCRAM-SHA-256' }],
  ['y,,n=,r=abc', 'channel-binding-downgrade', { channelBinding: BINDING, mechanism: 'SCRAM-SHA-256' }],
  ['y,,n=,r=abc', 'channel-binding-mismatch', { channelBinding: BINDING }],
  ['n,,n=,r=abc', 'channel-binding-mismatch', { channelBinding: BINDING }],
  ['p=tls-unique,,n=,r=abc', 'unsupported-channel-binding', { channelBinding: BINDING }],
  ['p=,,n=,r=abc', 'unsupported-channel-binding', { channelBinding: BINDING }],
  ['p,,n=,r=abc', 'bad-gs2-header', { channelBinding: BINDING }],
  ['n,,m=ext,n=,r=abc', 'unsupported-extension'],
  ['n,,r=abc', 'malformed-client-first'],
  ['n,,n=', 'malformed-client-first'],
  ['n,,n=,', 'malformed-client-first'],
  ['n,,n=,x=abc', 'malformed-client-first'],
  ['n,,n=,r', 'malformed-client-first'],
  ['n,,n,r=abc', 'malformed-client-first'],
  ['n,,N=,r=abc', 'malformed-client-first'],
  ['n,,n=,R=abc', 'malformed-client-first'],
  ['n,,n=,r=', 'bad-attribute'],
  ['n,,n=,r=ab c', 'bad-attribute'],
  ['n,,n=,r=ab\x7f', 'bad-attribute'],
  ['n,,n=,r=ab\tc', 'bad-attribute'],
  ['n,,n=,r=\xc3\xa9', 'bad-attribute'],
  ['n,,n=,r=abc,', 'bad-attribute'],
  ['n,,n=,r=abc,,', 'bad-attribute'],
  ['n,,n=,r=abc,1=x', 'bad-attribute'],
  ['n,,n=,r=abc,xx', 'bad-attribute'],
  ['n,,n=,r=abc,=x', 'bad-attribute'],
  [`n,,n=,r=${'a'.repeat(5000)}`, 'message-too-long'],
];

test('every malformed client-first-message fails with its ScramError reason', () => {
  for (const [message, reason, opts] of CLIENT_FIRST_CASES) {
    const scram = server(opts);
    assert.throws(() => scram.handleClientFirst(b(message)), scramError(reason), JSON.stringify(message));
    assert.equal(scram.state, 'failed');
    assert.throws(() => scram.handleClientFinal(b(VALID.clientFinal)), scramError('out-of-order'));
  }
});

test('client-first variants PostgreSQL accepts are accepted', () => {
  const accepted = ['n,,n=,r=abc', 'n,,n=user,r=abc', 'n,,n=,r=abc,x=1,Y=', 'y,,n=,r=abc', 'n,,n=,r=!"#$%&\'()*+-./~'];
  for (const message of accepted) {
    assert.match(server().handleClientFirst(b(message)).toString('latin1'), /^r=.+,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=16$/);
  }
  const plus = server({ channelBinding: BINDING });
  assert.ok(plus.handleClientFirst(b('p=tls-server-end-point,,n=,r=abc')));
});

const proofAt = VALID.clientFinal.lastIndexOf(',p=');
const WITHOUT_PROOF = VALID.clientFinal.slice(0, proofAt);
const PROOF = VALID.clientFinal.slice(proofAt + 3);
const PROOF_BYTES = Buffer.from(PROOF, 'base64');

const CLIENT_FINAL_CASES: [string, string][] = [
  ['', 'malformed-client-final'],
  [WITHOUT_PROOF, 'malformed-client-final'],
  [`${VALID.clientFinal}\0`, 'malformed-client-final'],
  [`p=${PROOF}`, 'malformed-client-final'],
  [`r=${CLIENT_NONCE}${SERVER_NONCE},c=biws,p=${PROOF}`, 'malformed-client-final'],
  [`c=biws,p=${PROOF}`, 'malformed-client-final'],
  [`c=biws,x=1,p=${PROOF}`, 'malformed-client-final'],
  [`C=biws,r=${CLIENT_NONCE}${SERVER_NONCE},p=${PROOF}`, 'malformed-client-final'],
  [`c=eSws,r=${CLIENT_NONCE}${SERVER_NONCE},p=${PROOF}`, 'channel-binding-mismatch'],
  [`c=,r=${CLIENT_NONCE}${SERVER_NONCE},p=${PROOF}`, 'channel-binding-mismatch'],
  [`c=biws==,r=${CLIENT_NONCE}${SERVER_NONCE},p=${PROOF}`, 'channel-binding-mismatch'],
  [`c=${Buffer.concat([b('n,,'), BINDING.data]).toString('base64')},r=${CLIENT_NONCE}${SERVER_NONCE},p=${PROOF}`, 'channel-binding-mismatch'],
  [`c=biws,r=${CLIENT_NONCE},p=${PROOF}`, 'nonce-mismatch'],
  [`c=biws,r=${CLIENT_NONCE}${SERVER_NONCE}x,p=${PROOF}`, 'nonce-mismatch'],
  [`c=biws,r=,p=${PROOF}`, 'nonce-mismatch'],
  [`${WITHOUT_PROOF},p=`, 'bad-attribute'],
  [`${WITHOUT_PROOF},p=!!!!`, 'bad-attribute'],
  [`${WITHOUT_PROOF},p=${PROOF_BYTES.subarray(1).toString('base64')}`, 'bad-attribute'],
  [`${WITHOUT_PROOF},p=${Buffer.concat([PROOF_BYTES, Buffer.from([0])]).toString('base64')}`, 'bad-attribute'],
  [`${WITHOUT_PROOF},p=${PROOF.slice(0, -1)}`, 'bad-attribute'],
  [`${WITHOUT_PROOF},p=${PROOF} `, 'bad-attribute'],
  [`${WITHOUT_PROOF},p=${PROOF},x=1`, 'bad-attribute'],
  [`${WITHOUT_PROOF},p=${PROOF},`, 'bad-attribute'],
  [`${WITHOUT_PROOF},p=xx,p=${PROOF}`, 'bad-attribute'],
  [`${WITHOUT_PROOF},1=x,p=${PROOF}`, 'bad-attribute'],
  [`${WITHOUT_PROOF},x=1,p=${PROOF}`, 'bad-proof'],
  [`${WITHOUT_PROOF},p=${Buffer.alloc(32).toString('base64')}`, 'bad-proof'],
  [`${WITHOUT_PROOF},p=${Buffer.from(PROOF_BYTES.map((byte, i) => (i === 31 ? byte ^ 1 : byte))).toString('base64')}`, 'bad-proof'],
  [`${WITHOUT_PROOF},p=${'A'.repeat(5000)}`, 'message-too-long'],
];

test('every malformed client-final-message fails with its ScramError reason', () => {
  for (const [message, reason] of CLIENT_FINAL_CASES) {
    const scram = server();
    scram.handleClientFirst(b(VALID.clientFirst));
    assert.throws(() => scram.handleClientFinal(b(message)), scramError(reason), JSON.stringify(message));
    assert.equal(scram.state, 'failed');
  }
  const scram = server();
  scram.handleClientFirst(b(VALID.clientFirst));
  assert.equal(scram.handleClientFinal(b(VALID.clientFinal)).toString('latin1'), VALID.serverFinal);
});

test('with channel binding, a client-final whose binding flag differs from client-first is rejected', () => {
  const scram = server({ channelBinding: BINDING });
  scram.handleClientFirst(b(`p=tls-server-end-point,,n=,r=${CLIENT_NONCE}`));
  assert.throws(() => scram.handleClientFinal(b(`c=biws,r=${CLIENT_NONCE}${SERVER_NONCE},p=${PROOF}`)), scramError('channel-binding-mismatch'));
});

test('server messages out of order fail with out-of-order and end the exchange', () => {
  const early = server();
  assert.throws(() => early.handleClientFinal(b(VALID.clientFinal)), scramError('out-of-order'));
  assert.throws(() => early.handleClientFirst(b(VALID.clientFirst)), scramError('out-of-order'));
  const twice = server();
  twice.handleClientFirst(b(VALID.clientFirst));
  assert.throws(() => twice.handleClientFirst(b(VALID.clientFirst)), scramError('out-of-order'));
  assert.throws(() => twice.handleClientFinal(b(VALID.clientFinal)), scramError('out-of-order'));
  const done = server();
  done.handleClientFirst(b(VALID.clientFirst));
  done.handleClientFinal(b(VALID.clientFinal));
  assert.throws(() => done.handleClientFinal(b(VALID.clientFinal)), scramError('out-of-order'));
  assert.equal(done.state, 'failed');
});

test('client-first truncated or split at every byte position: ScramError or a valid shorter message', () => {
  const message = `p=tls-server-end-point,,n=user,r=${CLIENT_NONCE}`;
  const minimal = `p=tls-server-end-point,,n=user,r=`.length + 1;
  for (let cut = 0; cut <= message.length; cut++) {
    const head = server({ channelBinding: BINDING });
    const result = scramOrResult(() => head.handleClientFirst(b(message.slice(0, cut))));
    assert.equal(result === null, cut < minimal, `cut at ${cut}`);
    if (result) assert.throws(() => head.handleClientFinal(b(message.slice(cut))), ScramError);
    if (cut > 0) assert.throws(() => server({ channelBinding: BINDING }).handleClientFirst(b(message.slice(cut))), ScramError, `tail from ${cut}`);
  }
});

test('client-final truncated or split at every byte position always fails with ScramError', () => {
  for (let cut = 0; cut < VALID.clientFinal.length; cut++) {
    for (const part of [VALID.clientFinal.slice(0, cut), VALID.clientFinal.slice(cut + 1)]) {
      const scram = server();
      scram.handleClientFirst(b(VALID.clientFirst));
      assert.throws(() => scram.handleClientFinal(b(part)), ScramError, `cut at ${cut}: ${JSON.stringify(part)}`);
    }
  }
});

/** Random bytes biased towards the characters SCRAM messages are made of. */
function randomMessage(random: () => number, alphabet: string): Buffer {
  const length = Math.floor(random() * 64);
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    bytes[i] = random() < 0.8 ? alphabet.charCodeAt(Math.floor(random() * alphabet.length)) : Math.floor(random() * 256);
  }
  return bytes;
}

/** One random edit (replace, delete, insert, duplicate a slice); always returns a different string. */
function mutate(random: () => number, text: string): string {
  const alphabet = ',=nyprcvsiemab01+/ \0';
  for (;;) {
    const at = Math.floor(random() * text.length);
    const char = alphabet[Math.floor(random() * alphabet.length)]!;
    const kind = Math.floor(random() * 4);
    const out =
      kind === 0 ? text.slice(0, at) + char + text.slice(at + 1)
      : kind === 1 ? text.slice(0, at) + text.slice(at + 1)
      : kind === 2 ? text.slice(0, at) + char + text.slice(at)
      : text.slice(0, at) + text.slice(at, at + 1 + Math.floor(random() * 8)) + text.slice(at);
    if (out !== text) return out;
  }
}

test('thousands of seeded random client-first messages: only ScramError, and no random final passes', () => {
  const random = seededRandom(5802);
  let accepted = 0;
  for (let i = 0; i < 3000; i++) {
    const scram = server({ channelBinding: i % 2 ? BINDING : null, mechanism: i % 3 ? 'SCRAM-SHA-256' : undefined });
    const first = i % 2 ? randomMessage(random, 'npy,=rm:abc') : b(mutate(random, VALID.clientFirst));
    if (scramOrResult(() => scram.handleClientFirst(first)) === null) continue;
    accepted++;
    assert.throws(() => scram.handleClientFinal(randomMessage(random, 'cpr,=biws')), ScramError);
  }
  assert.ok(accepted > 50, `only ${accepted} random client-first messages were accepted; the fuzz is too shallow`);
});

test('every one of thousands of random edits to a valid client-final is rejected with ScramError', () => {
  const random = seededRandom(7677);
  for (let i = 0; i < 3000; i++) {
    const scram = server();
    scram.handleClientFirst(b(VALID.clientFirst));
    const edited = mutate(random, VALID.clientFinal);
    assert.throws(() => scram.handleClientFinal(b(edited)), ScramError, JSON.stringify(edited));
  }
});

// ---------------------------------------------------------------------------------------------
// Client side: a hostile or broken upstream

const client = (opts: { maxIterations?: number } = {}): ScramClient => {
  const scram = new ScramClient({ password: 'pencil', nonce: CLIENT_NONCE, ...opts });
  scram.clientFirst();
  return scram;
};
const NONCE = `${CLIENT_NONCE}${SERVER_NONCE}`;
const SALT = 'W22ZaJ0SNY7soEsUEjb6gQ==';

const SERVER_FIRST_CASES: [string, string][] = [
  ['', 'malformed-server-first'],
  [`r=${NONCE},s=${SALT},i=16\0`, 'malformed-server-first'],
  [`m=ext,r=${NONCE},s=${SALT},i=16`, 'unsupported-extension'],
  [`s=${SALT},r=${NONCE},i=16`, 'malformed-server-first'],
  [`r=x${NONCE},s=${SALT},i=16`, 'nonce-mismatch'],
  [`r=${CLIENT_NONCE},s=${SALT},i=16`, 'nonce-mismatch'],
  [`r=${CLIENT_NONCE.slice(1)},s=${SALT},i=16`, 'nonce-mismatch'],
  [`r=,s=${SALT},i=16`, 'nonce-mismatch'],
  [`r=${NONCE} x,s=${SALT},i=16`, 'bad-attribute'],
  [`r=${NONCE}\xff,s=${SALT},i=16`, 'bad-attribute'],
  [`r=${NONCE},i=16`, 'malformed-server-first'],
  [`r=${NONCE},s=,i=16`, 'bad-attribute'],
  [`r=${NONCE},s=!!!!,i=16`, 'bad-attribute'],
  [`r=${NONCE},s=${SALT.slice(0, -2)},i=16`, 'bad-attribute'],
  [`r=${NONCE},s=${SALT}`, 'malformed-server-first'],
  [`r=${NONCE},s=${SALT},j=16`, 'malformed-server-first'],
  [`r=${NONCE},s=${SALT},i=16,x=1`, 'malformed-server-first'],
  [`r=${NONCE},s=${SALT},i=16,`, 'malformed-server-first'],
  [`r=${NONCE},s=${SALT},i=${'1'.repeat(5000)}`, 'message-too-long'],
  ...['', '0', '-1', '-4096', '+4096', ' 4096', '4096 ', '04096', '4096x', '0x1000', '1e3', '4096.0', 'NaN', 'Infinity',
    '1000001', '2147483647', '2147483648', '4294967297', '99999999999999999999999'].map(
    (value): [string, string] => [`r=${NONCE},s=${SALT},i=${value}`, 'bad-iterations'],
  ),
];

test('every malformed or hostile server-first-message fails (huge iteration counts before any PBKDF2 work)', () => {
  for (const [message, reason] of SERVER_FIRST_CASES) {
    const scram = client();
    assert.throws(() => scram.handleServerFirst(b(message)), scramError(reason), JSON.stringify(message));
    assert.equal(scram.state, 'failed');
  }
  assert.throws(() => client({ maxIterations: 10_000 }).handleServerFirst(b(`r=${NONCE},s=${SALT},i=10001`)), scramError('bad-iterations'));
  assert.ok(client({ maxIterations: 10_000 }).handleServerFirst(b(`r=${NONCE},s=${SALT},i=10000`)));
});

test('server-final-message: errors, bad signatures and garbage fail with ScramError', () => {
  const signature = VALID.serverFinal.slice(2);
  const cases: [string, string][] = [
    ['e=invalid-proof', 'server-error'],
    ['e=other-error,x=1', 'server-error'],
    ['', 'malformed-server-final'],
    ['v=', 'malformed-server-final'],
    ['v=!!!!', 'malformed-server-final'],
    [`v=${signature},x=1`, 'malformed-server-final'],
    [`v=${signature}\0`, 'malformed-server-final'],
    [`x=${signature}`, 'malformed-server-final'],
    [`V=${signature}`, 'malformed-server-final'],
    [`v=${Buffer.from(signature, 'base64').subarray(1).toString('base64')}`, 'malformed-server-final'],
    [`v=${Buffer.alloc(32).toString('base64')}`, 'bad-server-signature'],
  ];
  for (const [message, reason] of cases) {
    const scram = client();
    scram.handleServerFirst(b(VALID.serverFirst));
    assert.throws(() => scram.verifyServerFinal(b(message)), scramError(reason), JSON.stringify(message));
    assert.equal(scram.state, 'failed');
  }
  for (let cut = 0; cut < VALID.serverFinal.length; cut++) {
    const scram = client();
    scram.handleServerFirst(b(VALID.serverFirst));
    assert.throws(() => scram.verifyServerFinal(b(VALID.serverFinal.slice(0, cut))), ScramError, `cut at ${cut}`);
  }
});

test('client calls out of order fail with out-of-order', () => {
  const fresh = new ScramClient({ password: 'pencil' });
  assert.throws(() => fresh.handleServerFirst(b(VALID.serverFirst)), scramError('out-of-order'));
  assert.throws(() => fresh.clientFirst(), scramError('out-of-order'));
  const early = client();
  assert.throws(() => early.verifyServerFinal(b(VALID.serverFinal)), scramError('out-of-order'));
  const twice = client();
  assert.throws(() => twice.clientFirst(), scramError('out-of-order'));
  assert.throws(() => new ScramClient({ password: 'x', nonce: 'has,comma' }), TypeError);
  assert.throws(() => new ScramClient({ password: 'x', nonce: '' }), TypeError);
});

test('thousands of seeded random server-first and server-final messages: only ScramError', () => {
  const random = seededRandom(4013);
  const base = `r=${NONCE},s=${SALT},i=16`;
  for (let i = 0; i < 3000; i++) {
    const scram = client({ maxIterations: 64 });
    const message = i % 2 ? randomMessage(random, 'rsi,=0123456789abcW') : b(mutate(random, base));
    if (scramOrResult(() => scram.handleServerFirst(message)) === null) continue;
    assert.throws(() => scram.verifyServerFinal(b(mutate(random, VALID.serverFinal))), ScramError);
  }
});

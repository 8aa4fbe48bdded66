// SCRAM-SHA-256 against known vectors (RFC 7677, PostgreSQL's own verifiers), client <-> server round
// trips with and without channel binding, tls-server-end-point hashes, and the mock verifier.
// Hostile and malformed input lives in scram-hostile.test.ts.

import { seededRandom } from '../../support/random.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  buildScramVerifier,
  certificateChannelBindingHash,
  formatScramVerifier,
  mockScramVerifier,
  parseScramVerifier,
  ScramClient,
  ScramError,
  ScramServer,
  scramMechanisms,
  type ChannelBinding,
  type ScramVerifier,
} from '../../../src/protocol/scram.ts';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');

function scramError(reason: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof ScramError, `expected ScramError, got ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    return true;
  };
}

/** Runs a whole exchange; returns the server-final-message. Throws whatever either side throws. */
function exchange(client: ScramClient, server: ScramServer): Buffer {
  const serverFirst = server.handleClientFirst(client.clientFirst());
  const serverFinal = server.handleClientFinal(client.handleServerFirst(serverFirst));
  client.verifyServerFinal(serverFinal);
  return serverFinal;
}


const fixture = (name: string): Buffer => readFileSync(new URL(`../../fixtures/scram/${name}.pem`, import.meta.url));
const binding = (name: string): ChannelBinding => ({ type: 'tls-server-end-point', data: certificateChannelBindingHash(fixture(name)) });

// RFC 7677 section 3.
const RFC = {
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: 'W22ZaJ0SNY7soEsUEjb6gQ==',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

test('ScramClient reproduces the RFC 7677 exchange byte for byte', () => {
  const client = new ScramClient({ password: RFC.password, username: 'user', nonce: RFC.clientNonce });
  assert.equal(client.mechanism, 'SCRAM-SHA-256');
  assert.equal(client.clientFirst().toString('latin1'), RFC.clientFirst);
  assert.equal(client.handleServerFirst(b(RFC.serverFirst)).toString('latin1'), RFC.clientFinal);
  client.verifyServerFinal(b(RFC.serverFinal));
  assert.equal(client.state, 'done');
});

test('ScramServer reproduces the RFC 7677 exchange byte for byte', () => {
  const verifier = buildScramVerifier(RFC.password, { salt: Buffer.from(RFC.salt, 'base64'), iterations: 4096 });
  const server = new ScramServer({ verifier, nonce: RFC.serverNonce });
  assert.equal(server.handleClientFirst(b(RFC.clientFirst)).toString('latin1'), RFC.serverFirst);
  assert.equal(server.handleClientFinal(b(RFC.clientFinal)).toString('latin1'), RFC.serverFinal);
  assert.equal(server.state, 'done');
});

test('ScramServer rejects the RFC 7677 client-final when the password differs', () => {
  const verifier = buildScramVerifier('pencil2', { salt: Buffer.from(RFC.salt, 'base64') });
  const server = new ScramServer({ verifier, nonce: RFC.serverNonce });
  server.handleClientFirst(b(RFC.clientFirst));
  assert.throws(() => server.handleClientFinal(b(RFC.clientFinal)), scramError('bad-proof'));
  assert.equal(server.state, 'failed');
});

test('ScramClient rejects a server-final that is not the RFC signature', () => {
  const client = new ScramClient({ password: RFC.password, username: 'user', nonce: RFC.clientNonce });
  client.clientFirst();
  client.handleServerFirst(b(RFC.serverFirst));
  assert.throws(() => client.verifyServerFinal(b('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=')), scramError('malformed-server-final'));
  const other = new ScramClient({ password: 'not pencil', username: 'user', nonce: RFC.clientNonce });
  other.clientFirst();
  assert.notEqual(other.handleServerFirst(b(RFC.serverFirst)).toString('latin1'), RFC.clientFinal);
  assert.throws(() => other.verifyServerFinal(b(RFC.serverFinal)), scramError('bad-server-signature'));
});

test('client-first follows libpq: empty username, 24-character base64 nonce, gs2 flag by binding', () => {
  const first = new ScramClient({ password: 'x' }).clientFirst().toString('latin1');
  assert.match(first, /^n,,n=,r=[A-Za-z0-9+/]{24}$/);
  assert.match(new ScramClient({ password: 'x', channelBindingSupported: true }).clientFirst().toString(), /^y,,n=,r=/);
  const plus = new ScramClient({ password: 'x', channelBinding: binding('rsa-sha256') });
  assert.equal(plus.mechanism, 'SCRAM-SHA-256-PLUS');
  assert.match(plus.clientFirst().toString(), /^p=tls-server-end-point,,n=,r=/);
  const named = new ScramClient({ password: 'x', username: 'a=b,c', nonce: 'N' }).clientFirst().toString();
  assert.equal(named, 'n,,n=a=3Db=2Cc,r=N');
});

// From PostgreSQL's regression tests (src/test/regress/sql/password.sql): the secret of the empty
// password, which CREATE ROLE recognises and clears; its md5 twin is md5('' || 'regress_passwd_empty').
const REGRESS_EMPTY =
  'SCRAM-SHA-256$4096:hpFyHTUsSWcR7O9P$LgZFIt6Oqdo27ZFKbZ2nV+vtnYM995pDh9ca6WSi120=:qVV5NeluNfUPkwm7Vqat25RjSPLkGeoZBQs6wVv+um4=';

test("PostgreSQL's regression-test verifier for the empty password parses and authenticates ''", () => {
  const verifier = parseScramVerifier(REGRESS_EMPTY);
  assert.ok(verifier);
  assert.equal(verifier.iterations, 4096);
  assert.equal(verifier.salt.toString('base64'), 'hpFyHTUsSWcR7O9P');
  assert.equal(formatScramVerifier(buildScramVerifier('', { salt: verifier.salt })), REGRESS_EMPTY);
  exchange(new ScramClient({ password: '' }), new ScramServer({ verifier }));
  assert.throws(() => exchange(new ScramClient({ password: ' ' }), new ScramServer({ verifier })), scramError('bad-proof'));
});

// Produced by PostgreSQL 15.18 (ALTER ROLE ... PASSWORD, password_encryption = scram-sha-256):
// SASLprep mapping, NFKC, and the raw-password fallback for prohibited and bidi-violating input.
const POSTGRES_VERIFIERS: [string, string][] = [
  ['postgres', 'SCRAM-SHA-256$4096:itE4jj03Z4FHYZnKTLHSDQ==$hRSJuvju1FQuzgdrK6hhmRKfmhxsUcK37as+LZML3i8=:Qx/5MBe2U0h2J7xkmZ6aGPzT3tgLVf/964wWO343J+I='],
  ['\u2168 secret', 'SCRAM-SHA-256$4096:aN/+3AUVVBSkiWsJgrKcSQ==$0zGdw3WoWYPrkldp8MIOcRoi2nH2qE/0a1szcrXJkI0=:Bgs21zHFopBLh/7SyG4Nh+0uQdzM2SMHM7KcTAaR/z0='],
  ['a\u00ADb', 'SCRAM-SHA-256$4096:/qZMRHZF2w7Z13umXhImCQ==$MUsuS7by77rOAkb4q9A1nctTCUHU5q8pQtVP+K1TibA=:jYQtmiug4Lp0D6DnN8b7ub/M3GUX2Fj1fxIA6NgucB0='],
  ['x\u00A0y', 'SCRAM-SHA-256$4096:/7hWJSNLIgbq/a90YekDcw==$OXW+TioCPung82/iKDhkzRpOElgB0LkTTqs12JCsc6o=:ljCNWtDIWdJ1uqD0gST4jZUh7GtOfO+O3PRuUJSkXBo='],
  ['\u05D0a', 'SCRAM-SHA-256$4096:zyxy3CHEhVBn8tSBp25Frw==$THmfr3ojaSYmIvhb1ezv2n/OmhnJJILqj5MRfiorxiA=:TUimwpImynUR9HrW30u/t8nGgWos/HNxcYZxFTNuGbE='],
  ['\u2168\uFFBF', 'SCRAM-SHA-256$4096:MseOcp6CJSguQMN2wBuLHg==$ydLqHCp/UKmJaeVuzXkkPDPeQ06OVoYZCxH8vh56ljw=:nhmB7+io1o8Z6ONu5i1Kj0OV+6qCp86Ge0Hr/do9iDQ='],
  ['\uFB4F1\uFB4F', 'SCRAM-SHA-256$4096:vyFk7ci6FpmLRyxWYG2ZCA==$Wq1Il/Xr/uBj+jei7zazvj7Rqpq/4JqRtUZu7bBO4bo=:01LiL72z+PQrd2UOIcwZOmEpX5r/f67AQXPkwsXDUbk='],
];

test('buildScramVerifier matches verifiers PostgreSQL 15 stored for the same password and salt', () => {
  for (const [password, stored] of POSTGRES_VERIFIERS) {
    const parsed = parseScramVerifier(stored);
    assert.ok(parsed, stored);
    assert.equal(formatScramVerifier(parsed), stored);
    const built = buildScramVerifier(password, { salt: parsed.salt, iterations: parsed.iterations });
    assert.equal(formatScramVerifier(built), stored, `password ${JSON.stringify(password)}`);
  }
});

test('a PostgreSQL-stored verifier authenticates its password end to end, SASLprep applied on the client', () => {
  const verifier = parseScramVerifier(POSTGRES_VERIFIERS[1]![1])!;
  exchange(new ScramClient({ password: '\u2168 secret' }), new ScramServer({ verifier }));
  exchange(new ScramClient({ password: 'IX secret' }), new ScramServer({ verifier })); // same after NFKC
  assert.throws(() => exchange(new ScramClient({ password: 'ix secret' }), new ScramServer({ verifier })), scramError('bad-proof'));
});

test('parseScramVerifier accepts only the exact stored format', () => {
  // regress_passwd_sha_len0 is PostgreSQL's valid control; len1 has an over-long StoredKey.
  const len0 = 'SCRAM-SHA-256$4096:A6xHKoH/494E941doaPOYg==$Ky+A30sewHIH3VHQLRN9vYsuzlgNyGNKCh37dy96Rqw=:COPdlNiIkrsacU5QoxydEuOH6e/KfiipeETb/bPw8ZI=';
  assert.ok(parseScramVerifier(len0));
  const [head, keys] = [len0.slice(0, len0.lastIndexOf('$')), len0.slice(len0.lastIndexOf('$') + 1)];
  const [stored, server] = keys.split(':') as [string, string];
  const longKey = 'Ky+A30sewHIH3VHQLRN9vYsuzlgNyGNKCh37dy96RqwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
  const invalid = [
    `${head}$${longKey}:${server}`,
    `${head}$${stored}:${longKey}`,
    `${head}$${stored.slice(4)}:${server}`,
    `${head}$${stored}`,
    `${head}$${stored}:${server}:extra`,
    len0.replace('SCRAM-SHA-256', 'SCRAM-SHA-1'),
    len0.replace('$4096:', '$0:'),
    len0.replace('$4096:', '$-4096:'),
    len0.replace('$4096:', '$04096:'),
    len0.replace('$4096:', '$4096x:'),
    len0.replace('$4096:', '$ 4096:'),
    len0.replace('$4096:', '$99999999999:'),
    len0.replace('$4096:', '$2147483648:'),
    len0.replace('$4096:', '$:'),
    len0.replace('A6xHKoH/494E941doaPOYg==', ''),
    len0.replace('A6xHKoH/494E941doaPOYg==', 'A6xHKoH/494E941doaPOYg'),
    len0.replace('A6xHKoH/494E941doaPOYg==', 'A6xHKoH/494E941doaPOYh=='),
    len0.replace('A6xHKoH/494E941doaPOYg==', 'A6xHKoH/494E941doaPOY*=='),
    ` ${len0}`,
    `${len0}\n`,
    'md52aea419619857e8a27f0f7aa641db0c6',
    '',
  ];
  for (const text of invalid) assert.equal(parseScramVerifier(text), null, text);
  assert.equal(parseScramVerifier(len0.replace('$4096:', '$2147483647:'))?.iterations, 2147483647);
});

test('buildScramVerifier defaults to 4096 iterations and a fresh 16-byte salt, and rejects bad options', () => {
  const first = buildScramVerifier('secret');
  const second = buildScramVerifier('secret');
  assert.equal(first.iterations, 4096);
  assert.equal(first.salt.length, 16);
  assert.notDeepEqual(first.salt, second.salt);
  assert.deepEqual(parseScramVerifier(formatScramVerifier(first)), first);
  for (const iterations of [0, -1, 1.5, Number.NaN, 2 ** 31]) {
    assert.throws(() => buildScramVerifier('x', { iterations }), RangeError);
  }
  assert.throws(() => buildScramVerifier('x', { salt: Buffer.alloc(0) }), RangeError);
});

test('client and server agree for random passwords, plain and with channel binding', () => {
  const random = seededRandom(7677);
  const cb = binding('rsa-sha256');
  for (let i = 0; i < 60; i++) {
    let password = '';
    const length = Math.floor(random() * 12);
    for (let j = 0; j < length; j++) {
      const roll = random();
      const code = roll < 0.6 ? 0x20 + Math.floor(random() * 95) : roll < 0.9 ? 0xa0 + Math.floor(random() * 0x2000) : 0x10000 + Math.floor(random() * 0x20000);
      password += String.fromCodePoint(code);
    }
    const verifier = buildScramVerifier(password, { iterations: 16 });
    const withBinding = i % 2 === 1;
    const client = new ScramClient({ password, channelBinding: withBinding ? cb : null });
    const server = new ScramServer({ verifier, channelBinding: withBinding ? cb : null, mechanism: client.mechanism });
    const serverFinal = exchange(client, server);
    assert.match(serverFinal.toString('latin1'), /^v=[A-Za-z0-9+/]{43}=$/);
    assert.equal(server.state, 'done');
    assert.equal(client.state, 'done');
    const wrong = new ScramClient({ password: `${password}!`, channelBinding: withBinding ? cb : null });
    const strict = new ScramServer({ verifier, channelBinding: withBinding ? cb : null, mechanism: wrong.mechanism });
    assert.throws(() => exchange(wrong, strict), scramError('bad-proof'));
  }
});

test('channel binding: data from another certificate is rejected', () => {
  const verifier = buildScramVerifier('pw', { iterations: 16 });
  const client = new ScramClient({ password: 'pw', channelBinding: binding('ecdsa-sha384') });
  const server = new ScramServer({ verifier, channelBinding: binding('rsa-sha256'), mechanism: 'SCRAM-SHA-256-PLUS' });
  assert.throws(() => exchange(client, server), scramError('channel-binding-mismatch'));
  const tampered = binding('rsa-sha256');
  tampered.data[0]! ^= 1;
  const again = new ScramServer({ verifier, channelBinding: binding('rsa-sha256') });
  assert.throws(() => exchange(new ScramClient({ password: 'pw', channelBinding: tampered }), again), scramError('channel-binding-mismatch'));
});

test('channel binding negotiation follows PostgreSQL', () => {
  const verifier = buildScramVerifier('pw', { iterations: 16 });
  const cb = binding('rsa-sha256');
  // TLS, client chose plain SCRAM-SHA-256 and says it cannot bind: accepted.
  exchange(new ScramClient({ password: 'pw' }), new ScramServer({ verifier, channelBinding: cb, mechanism: 'SCRAM-SHA-256' }));
  // No TLS, client could bind but the server offered no PLUS: flag y accepted.
  exchange(new ScramClient({ password: 'pw', channelBindingSupported: true }), new ScramServer({ verifier }));
  // TLS with PLUS offered but the client says y: the mechanism list was stripped on the way.
  const downgraded = new ScramServer({ verifier, channelBinding: cb, mechanism: 'SCRAM-SHA-256' });
  assert.throws(() => exchange(new ScramClient({ password: 'pw', channelBindingSupported: true }), downgraded), scramError('channel-binding-downgrade'));
  // Client selected PLUS but sent n; client selected plain but sent p.
  const plusServer = new ScramServer({ verifier, channelBinding: cb, mechanism: 'SCRAM-SHA-256-PLUS' });
  assert.throws(() => exchange(new ScramClient({ password: 'pw' }), plusServer), scramError('channel-binding-mismatch'));
  const plainServer = new ScramServer({ verifier, channelBinding: cb, mechanism: 'SCRAM-SHA-256' });
  assert.throws(() => exchange(new ScramClient({ password: 'pw', channelBinding: cb }), plainServer), scramError('channel-binding-mismatch'));
  // p= on a connection without binding data.
  assert.throws(() => exchange(new ScramClient({ password: 'pw', channelBinding: cb }), new ScramServer({ verifier })), scramError('channel-binding-mismatch'));
});

test('the mechanism must be one the server can offer', () => {
  const verifier = buildScramVerifier('pw', { iterations: 16 });
  assert.throws(() => new ScramServer({ verifier, mechanism: 'SCRAM-SHA-256-PLUS' }), scramError('bad-mechanism'));
  assert.throws(() => new ScramServer({ verifier, mechanism: 'SCRAM-SHA-1' }), scramError('bad-mechanism'));
  assert.throws(() => new ScramServer({ verifier, mechanism: '' }), scramError('bad-mechanism'));
  assert.equal(new ScramServer({ verifier }).mechanism, 'SCRAM-SHA-256');
  assert.equal(new ScramServer({ verifier, channelBinding: binding('rsa-sha256') }).mechanism, 'SCRAM-SHA-256-PLUS');
  assert.deepEqual(scramMechanisms(null), ['SCRAM-SHA-256']);
  assert.deepEqual(scramMechanisms(binding('rsa-sha256')), ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
});

// Expected values computed with `openssl x509 -outform der | openssl dgst -<hash>`; each fixture was
// also checked against PostgreSQL 15 (libpq and server) with channel_binding=require.
const END_POINT_VECTORS: [string, string, string][] = [
  ['rsa-sha256', 'sha256', 'f345c2a9158b57fa3113102e95ed6c50ffc54c2867cad39498e7fdc4a0cf4190'],
  ['rsa-sha1', 'sha256', '2bb7553127de59474b0a7e44731bfc3081290592c1b8b945fbaf75712da7b4ea'],
  ['rsa-sha512', 'sha512', '108d1c9d3d2efdd0e7700650cb5518c351eca4fbb966480fc0cb0743ba5dc4b2598596934e49f56b191300044f5ecd96acc97449ddf44f1360a757817f02bcb4'],
  ['ecdsa-sha384', 'sha384', 'e9e8fb2b1dd10d604e301a56b29764994dc2d1dae16d3de428f054c6b4c2d78bee30b241d22b994df492243ed0c6ea66'],
  ['ecdsa-sha224', 'sha224', '4c45cdcdc290cfe0798134720a50a048ef319328db13312cd143bdbf'],
  ['rsa-pss-sha384', 'sha384', '2c1a4655ee18ef387237eb2ce407c7de0ea8051463ee9a6e411a39194ddab6897156fb91b53ab2e7d92d42f471445a62'],
  ['rsa-pss-sha1', 'sha256', '998083d663439538c01bbca65e119c0fc9f66760e8366c1b5f8dab743c63ccec'],
];

test('certificateChannelBindingHash picks the hash from the signature algorithm (SHA-256 for SHA-1)', () => {
  for (const [name, hash, hex] of END_POINT_VECTORS) {
    const pem = fixture(name);
    const der = new X509Certificate(pem).raw;
    assert.equal(certificateChannelBindingHash(der).toString('hex'), hex, name);
    assert.equal(certificateChannelBindingHash(pem).toString('hex'), hex, `${name} as PEM`);
    assert.equal(createHash(hash).update(der).digest('hex'), hex, `${name} fixture sanity`);
  }
});

test('certificateChannelBindingHash refuses certificates it cannot bind to', () => {
  assert.throws(() => certificateChannelBindingHash(fixture('ed25519')), scramError('bad-certificate'));
  assert.throws(() => certificateChannelBindingHash(Buffer.from('not a certificate')), scramError('bad-certificate'));
  assert.throws(() => certificateChannelBindingHash(Buffer.alloc(0)), scramError('bad-certificate'));
  const der = new X509Certificate(fixture('rsa-sha256')).raw;
  assert.throws(() => certificateChannelBindingHash(der.subarray(0, der.length - 1)), scramError('bad-certificate'));
});

test('mockScramVerifier runs an unknown user to the end and fails at the proof', () => {
  const secret = Buffer.from('server secret');
  const ghost = mockScramVerifier('ghost', secret);
  assert.deepEqual(mockScramVerifier('ghost', secret), ghost);
  assert.notDeepEqual(mockScramVerifier('ghost2', secret).salt, ghost.salt);
  assert.notDeepEqual(mockScramVerifier('ghost', Buffer.from('other secret')).salt, ghost.salt);
  assert.equal(ghost.salt.length, 16);
  assert.equal(ghost.iterations, 4096);
  assert.equal(mockScramVerifier('ghost', secret, 10000).iterations, 10000);
  const real = buildScramVerifier('pw');
  const shapes = [ghost, real].map((verifier: ScramVerifier) => {
    const first = new ScramServer({ verifier }).handleClientFirst(b('n,,n=,r=abc')).toString('latin1');
    return first.replace(/[A-Za-z0-9+/]/g, 'x');
  });
  assert.equal(shapes[0], shapes[1]);
  for (const password of ['', 'pw', 'ghost']) {
    const server = new ScramServer({ verifier: ghost });
    assert.throws(() => exchange(new ScramClient({ password }), server), scramError('bad-proof'));
    assert.equal(server.state, 'failed');
  }
});

test('the server nonce comes from injected randomness, 18 bytes base64-encoded', () => {
  const requested: number[] = [];
  const server = new ScramServer({
    verifier: buildScramVerifier('pw', { iterations: 16 }),
    nonceBytes: (count) => {
      requested.push(count);
      return Buffer.alloc(count, 0xff);
    },
  });
  const first = server.handleClientFirst(b('n,,n=,r=client')).toString('latin1');
  assert.deepEqual(requested, [18]);
  assert.match(first, /^r=client\/{24},s=/);
});

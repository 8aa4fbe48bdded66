// SASLprep as PostgreSQL applies it to passwords. The table-driven cases below were cross-checked
// against PostgreSQL 15 (thousands of probes at every table boundary gave identical SCRAM keys).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { saslprep, saslprepOrRaw, SaslprepError } from '../../../src/protocol/saslprep.ts';

function failsWith(reason: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof SaslprepError, `expected SaslprepError, got ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    return true;
  };
}

test('pure ASCII is returned unchanged, control characters included (PostgreSQL fast path)', () => {
  for (const text of ['', 'pencil', 'with space', '\x01\x7f\t', 'IX', '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~']) {
    assert.equal(saslprep(text), text);
    assert.equal(saslprepOrRaw(text), text);
  }
});

test('non-ASCII spaces map to U+0020', () => {
  for (const space of ['\u00A0', '\u1680', '\u2000', '\u2005', '\u200B', '\u202F', '\u205F', '\u3000']) {
    assert.equal(saslprep(`a${space}b`), 'a b', `U+${space.codePointAt(0)!.toString(16)}`);
  }
});

test('commonly-mapped-to-nothing characters are removed', () => {
  for (const gone of ['\u00AD', '\u034F', '\u1806', '\u180B', '\u200C', '\u200D', '\u2060', '\uFE00', '\uFE0F', '\uFEFF']) {
    assert.equal(saslprep(`a${gone}b`), 'ab', `U+${gone.codePointAt(0)!.toString(16)}`);
  }
});

test('NFKC normalisation', () => {
  assert.equal(saslprep('\u2168'), 'IX'); // ROMAN NUMERAL NINE
  assert.equal(saslprep('\u00AA'), 'a'); // FEMININE ORDINAL INDICATOR
  assert.equal(saslprep('\uFB01'), 'fi'); // LATIN SMALL LIGATURE FI
  assert.equal(saslprep('e\u0301'), '\u00E9'); // composition
  assert.equal(saslprep('\u2126'), '\u03A9'); // OHM SIGN -> GREEK CAPITAL OMEGA
  assert.equal(saslprep('\uFF21\uFF42'), 'Ab'); // full-width
  assert.equal(saslprep('I\u00ADX\u00A0\u2168'), 'IX IX');
});

test('prohibited output, unassigned code points and bidi violations fail; saslprepOrRaw returns the raw input', () => {
  const cases: [string, string][] = [
    ['a\u0080', 'prohibited'], // C.2.2 control
    ['\u00E9\u0001', 'prohibited'], // ASCII control once the fast path is off
    ['a\uE000', 'prohibited'], // private use
    ['a\uFFFF', 'prohibited'], // non-character
    ['a\u2028', 'prohibited'], // LINE SEPARATOR
    ['a\u200E', 'prohibited'], // LEFT-TO-RIGHT MARK
    ['a\u{E0041}', 'prohibited'], // tagging character
    ['a\u0221', 'prohibited'], // unassigned in Unicode 3.2 (assigned since)
    ['\u2168\u{1F642}', 'prohibited'], // emoji: unassigned in 3.2, so raw
    ['\u2168\uFFBF', 'prohibited'],
    ['\u05D0a', 'bidi'], // RandALCat and LCat mixed
    ['\u0627\u0031', 'bidi'], // must end with RandALCat
    ['\u0031\u0627', 'bidi'], // must start with RandALCat
    ['\u00AD', 'empty'],
    ['\uFEFF\u00AD', 'empty'],
    ['a\uD800b', 'invalid-unicode'],
  ];
  for (const [text, reason] of cases) {
    assert.throws(() => saslprep(text), failsWith(reason), JSON.stringify(text));
    assert.equal(saslprepOrRaw(text), text);
  }
  assert.equal(saslprep('\u0627\u0031\u0628'), '\u0627\u0031\u0628'); // RandAL at both ends
  assert.equal(saslprep('\uFB4F1\uFB4F'), '\u05D0\u05DC1\u05D0\u05DC');
});

test('the checks run on the mapped input before normalisation, as in PostgreSQL', () => {
  // U+0340 COMBINING GRAVE TONE MARK is prohibited (C.8); NFKC would turn it into U+0300, which is not.
  assert.throws(() => saslprep('a\u0340'), failsWith('prohibited'));
  assert.equal(saslprepOrRaw('a\u0340'), 'a\u0340');
  assert.equal(saslprep('a\u0300'), '\u00E0');
});

test('saslprepOrRaw on bytes: prepared UTF-8 when valid, the very same bytes otherwise', () => {
  assert.deepEqual(saslprepOrRaw(Buffer.from('\u2168', 'utf8')), Buffer.from('IX'));
  const ascii = Buffer.from('pencil');
  assert.equal(saslprepOrRaw(ascii), ascii);
  const latin1 = Buffer.from([0x70, 0xe4, 0x73, 0x73]); // 'päss' in Latin-1: not UTF-8
  assert.equal(saslprepOrRaw(latin1), latin1);
  const surrogate = Buffer.from([0x61, 0xed, 0xa0, 0x80]); // CESU-8 surrogate: not UTF-8
  assert.equal(saslprepOrRaw(surrogate), surrogate);
  const prohibited = Buffer.from('a\u0080', 'utf8');
  assert.equal(saslprepOrRaw(prohibited), prohibited);
  assert.deepEqual(saslprepOrRaw(Buffer.from('\uFEFFab', 'utf8')), Buffer.from('ab')); // BOM is B.1, not stripped early
});

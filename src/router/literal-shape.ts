// The shape of a query text: the text with its numeric literals replaced, so that the statements
// an application sends with literal values (`... WHERE id = 42`, then `= 43`) share one cache
// entry in the classifier instead of one parse each (20-60 µs with libpg-query).
//
// Only numbers are replaced: they never change whether a statement reads or writes, which
// functions it calls or what a directive says -- except where a number is a boolean (0 is false):
// `EXPLAIN (ANALYZE 0)` reads and `(ANALYZE 1)` runs the statement, `SET transaction_read_only = 0`
// undoes `= 1`, `SET ambassador.retry = 0` turns retries off; a text naming one of those keeps its
// exact text as the key. So does a text with a quote, dollar, backslash or comment (strings
// carry directive values and hints, comments carry hints, and only the lexer reads those right),
// and a text where a number runs straight into a word (`1into`), which the parser splits in ways
// a key must not blur; and a text with a `?`, whose shape could be another text's (`select ?, 2`
// and `select 1, 2`). PURE.

/** Names of the options and settings whose numeric values are booleans (EXPLAIN ANALYSE is ANALYZE). */
const BOOLEAN_NUMBERS = /analy[sz]e|read_only|ambassador/i;

/** The text with every numeric literal replaced by `?`, or null when the exact text must be the key. */
export function literalShape(sql: string): string | null {
  if (BOOLEAN_NUMBERS.test(sql)) return null;
  let out = '';
  let copied = 0;
  for (let i = 0; i < sql.length; ) {
    const c = sql.charCodeAt(i);
    // ' " $ \, and ? (a text holding the placeholder would share the shape of another).
    if (c === 0x27 || c === 0x22 || c === 0x24 || c === 0x5c || c === 0x3f) return null;
    if ((c === 0x2d && sql.charCodeAt(i + 1) === 0x2d) || (c === 0x2f && sql.charCodeAt(i + 1) === 0x2a)) return null; // -- /*
    if (!isDigit(c) || (i > 0 && isIdentifierChar(sql.charCodeAt(i - 1)))) {
      i++;
      continue;
    }
    const end = numberEnd(sql, i);
    if (end < sql.length && isIdentifierChar(sql.charCodeAt(end))) return null;
    out += `${sql.slice(copied, i)}?`;
    copied = end;
    i = end;
  }
  return copied === 0 ? null : out + sql.slice(copied);
}

/**
 * Whether `bytes[start, end)` has the literal shape of `shaped[shapedStart, shapedEnd)`, a text
 * whose literalShape is not null; both ASCII only, so each byte is its character: what
 * `literalShape(text) === literalShape(shaped)` says, read in one pass over both that builds
 * nothing. For the classifier's last simple Query, compared with the next one before a string is
 * made of it (Classifier.classifyAsciiQuery). Both are walked in step: a number in one must be a
 * number in the other, anything else the same byte.
 *
 * Why nothing else needs checking: `shaped` holds no quote, dollar, backslash, `?` or comment
 * opener, no BOOLEAN_NUMBERS word and no number running into a word (its shape is not null), so
 * a text that matches it outside its numbers holds none either -- a number is bounded by
 * characters that continue no identifier, so no such word can reach into one, and a `--` or `/*`
 * would need a character `shaped` lacks. A digit after a matched character starts a number in
 * both texts or in neither, as that character is the same in both. After a number, `shaped` goes
 * on with a character that continues no identifier: the other text differs there if its number
 * runs into a word (`7a`, which literalShape leaves whole).
 */
export function sameLiteralShapeBytes(shaped: Uint8Array, shapedStart: number, shapedEnd: number, bytes: Uint8Array, start: number, end: number): boolean {
  let i = shapedStart;
  let j = start;
  while (i < shapedEnd && j < end) {
    const c = shaped[i]!;
    if (isDigit(c) && !(i > shapedStart && isIdentifierChar(shaped[i - 1]!))) {
      if (!isDigit(bytes[j]!)) return false;
      i = numberEndBytes(shaped, i, shapedEnd);
      j = numberEndBytes(bytes, j, end);
      continue;
    }
    if (bytes[j] !== c) return false;
    i++;
    j++;
  }
  return i === shapedEnd && j === end;
}

/** numberEnd over bytes[start, end) (start is a digit): what lies at or past `end` is not the text's. */
function numberEndBytes(bytes: Uint8Array, start: number, end: number): number {
  const radix = byteAt(bytes, start, end) === 0x30 ? byteAt(bytes, start + 1, end) | 0x20 : 0;
  if (radix === 0x78 || radix === 0x6f || radix === 0x62) {
    let i = start + 2;
    while (i < end && radixDigit(bytes[i]!, radix)) i++;
    return i > start + 2 ? i : start + 1;
  }
  let i = digitsEndBytes(bytes, start, end);
  if (byteAt(bytes, i, end) === 0x2e && isDigit(byteAt(bytes, i + 1, end))) i = digitsEndBytes(bytes, i + 1, end);
  if ((byteAt(bytes, i, end) | 0x20) === 0x65) {
    const sign = byteAt(bytes, i + 1, end) === 0x2b || byteAt(bytes, i + 1, end) === 0x2d ? 1 : 0;
    if (isDigit(byteAt(bytes, i + 1 + sign, end))) i = digitsEndBytes(bytes, i + 1 + sign, end);
  }
  return i;
}

function digitsEndBytes(bytes: Uint8Array, from: number, end: number): number {
  let i = from;
  while (i < end && (isDigit(bytes[i]!) || (bytes[i] === 0x5f && isDigit(byteAt(bytes, i + 1, end))))) i++;
  return i;
}

/** bytes[i], or -1 past `end` (as charCodeAt past a string's end gives NaN). */
function byteAt(bytes: Uint8Array, i: number, end: number): number {
  return i < end ? bytes[i]! : -1;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Letters, digits, _ and $ continue an identifier; so does anything beyond ASCII. */
function isIdentifierChar(c: number): boolean {
  return isDigit(c) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) || c === 0x5f || c === 0x24 || c >= 0x80;
}

/** End of the numeric literal starting at `start` (a digit): 12, 1_000, 1.5, 1.5e-3, 0x1F, 0o17, 0b101. */
function numberEnd(sql: string, start: number): number {
  const radix = sql.charCodeAt(start) === 0x30 ? (sql.charCodeAt(start + 1) | 0x20) : 0;
  if (radix === 0x78 || radix === 0x6f || radix === 0x62) {
    let i = start + 2;
    while (i < sql.length && radixDigit(sql.charCodeAt(i), radix)) i++;
    // A prefix without a digit of its radix (`0x`, `0b2`) is a 0 running into a word.
    return i > start + 2 ? i : start + 1;
  }
  let i = digitsEnd(sql, start);
  if (sql.charCodeAt(i) === 0x2e && isDigit(sql.charCodeAt(i + 1))) i = digitsEnd(sql, i + 1);
  if ((sql.charCodeAt(i) | 0x20) === 0x65) {
    const sign = sql.charCodeAt(i + 1) === 0x2b || sql.charCodeAt(i + 1) === 0x2d ? 1 : 0;
    if (isDigit(sql.charCodeAt(i + 1 + sign))) i = digitsEnd(sql, i + 1 + sign);
  }
  return i;
}

function digitsEnd(sql: string, from: number): number {
  let i = from;
  while (i < sql.length && (isDigit(sql.charCodeAt(i)) || (sql.charCodeAt(i) === 0x5f && isDigit(sql.charCodeAt(i + 1))))) i++;
  return i;
}

/** A digit of the radix `0x`, `0o` or `0b` names (`radix`: x, o or b), or `_` between digits. */
function radixDigit(c: number, radix: number): boolean {
  if (c === 0x5f) return true;
  if (radix === 0x78) return isHexDigit(c);
  return radix === 0x6f ? c >= 0x30 && c <= 0x37 : c === 0x30 || c === 0x31;
}

function isHexDigit(c: number): boolean {
  return isDigit(c) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);
}

// A PostgreSQL-accurate SQL tokenizer and statement splitter (PURE: no I/O).
//
// Follows the server's scan.l for token boundaries: whitespace, `--` and nested `/* */`
// comments, '...' / E'...' / N'...' / U&'...' / B'...' / X'...' strings, $tag$ dollar quotes
// (a tag cannot follow an identifier character, `$1` is a parameter), "..." and U&"..."
// identifiers, numbers, operators (cut before an embedded `--` or `/*`), punctuation.
// Identifiers carry their folded, NAMEDATALEN-truncated name in `value`; literals their decoded
// text when it can be decoded without ambiguity.
//
// Invariants: tokens cover the input exactly (joining their `text` gives the input back); the
// tokenizer never throws. A token whose end cannot be known for sure carries `uncertain`:
// 'unterminated' (runs to the end of the text) or 'backslash' (a '...' string whose end differs
// when standard_conforming_strings is off).
//
// Statements split at top-level `;` like psql does: not inside parentheses, and not inside the
// BEGIN ... END body of CREATE [OR REPLACE] FUNCTION|PROCEDURE (BEGIN ATOMIC).

export type TokenKind =
  | 'whitespace'
  | 'comment'
  | 'identifier'
  | 'quoted-identifier'
  | 'string'
  | 'bit-string'
  | 'dollar-string'
  | 'number'
  | 'parameter'
  | 'operator'
  | 'punctuation'
  | 'semicolon'
  | 'other';

export interface Token {
  kind: TokenKind;
  /** Exact source text. */
  text: string;
  start: number;
  end: number;
  /**
   * identifier: lower-cased (ASCII only, as Postgres) and truncated to 63 bytes;
   * quoted-identifier: unescaped and truncated; string / bit-string / dollar-string: the content,
   * undefined when it cannot be decoded without ambiguity (backslashes in a '...' string, octal or
   * hex escapes in E'...', bad Unicode escapes).
   */
  value?: string;
  uncertain?: 'unterminated' | 'backslash';
}

export interface SqlStatement {
  /** Exact source text between the separating `;` (or the text's ends). */
  text: string;
  start: number;
  end: number;
  /** Every token of `text`, whitespace and comments included. */
  tokens: Token[];
  /** The text ended inside parentheses or a BEGIN ... END routine body. */
  unbalanced: boolean;
}

const NAMEDATALEN = 64;
const NON_ASCII = /[^\x00-\x7f]/;
const OPERATOR_CHARS = '~!@#^&|`?+-*/%<>=';
const PUNCTUATION_CHARS = ',()[].:';
const IDENTIFIER = /[A-Za-z_\u0080-\uffff][A-Za-z_0-9$\u0080-\uffff]*/y;
const DOLLAR_DELIMITER = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z_0-9\u0080-\uffff]*)?\$/y;
const PARAMETER = /\$[0-9]+/y;
const NUMBER =
  /0[xX](?:_?[0-9A-Fa-f])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|(?:[0-9](?:_?[0-9])*(?:\.(?!\.)(?:[0-9](?:_?[0-9])*)?)?|\.[0-9](?:_?[0-9])*)(?:[eE][-+]?[0-9](?:_?[0-9])*)?/y;

const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';

function sticky(re: RegExp, sql: string, pos: number): number {
  re.lastIndex = pos;
  return re.test(sql) ? re.lastIndex : pos;
}

function make(sql: string, kind: TokenKind, start: number, end: number, extra?: Partial<Token>): Token {
  const token: Token = { kind, text: sql.slice(start, end), start, end };
  return extra ? Object.assign(token, extra) : token;
}

/** Folds ASCII letters only, as Postgres's downcase_identifier does for multibyte encodings. */
function foldIdentifier(name: string): string {
  return NON_ASCII.test(name) ? name.replace(/[A-Z]+/g, (upper) => upper.toLowerCase()) : name.toLowerCase();
}

/** Truncates to NAMEDATALEN-1 bytes of UTF-8 without splitting a character. */
export function truncateIdentifier(name: string): string {
  if (name.length * 3 <= NAMEDATALEN - 1 || (name.length < NAMEDATALEN && !NON_ASCII.test(name))) return name;
  let bytes = 0;
  let index = 0;
  for (const char of name) {
    const cp = char.codePointAt(0)!;
    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes > NAMEDATALEN - 1) return name.slice(0, index);
    index += char.length;
  }
  return name;
}

/** End (exclusive) of a quoted run starting after `open`; `quote` doubles to escape itself. */
export function scanQuoted(sql: string, from: number, quote: string, backslash: boolean): number | null {
  let i = from;
  while (i < sql.length) {
    const c = sql[i];
    if (backslash && c === '\\') i += 2;
    else if (c !== quote) i++;
    else if (sql[i + 1] === quote) i += 2;
    else return i + 1;
  }
  return null;
}

function quotedToken(sql: string, kind: TokenKind, start: number, bodyStart: number, quote: string, backslash: boolean): Token {
  const end = scanQuoted(sql, bodyStart, quote, backslash);
  if (end === null) return make(sql, kind, start, sql.length, { uncertain: 'unterminated' });
  const value = sql.slice(bodyStart, end - 1).replaceAll(quote + quote, quote);
  return make(sql, kind, start, end, { value: kind === 'quoted-identifier' ? truncateIdentifier(value) : value });
}

/** '...' (or N'...'): '' escapes; a backslash makes the end depend on standard_conforming_strings. */
function standardString(sql: string, start: number, bodyStart: number): Token {
  const token = quotedToken(sql, 'string', start, bodyStart, "'", false);
  if (token.uncertain || !token.text.includes('\\')) return token;
  const escapedEnd = scanQuoted(sql, bodyStart, "'", true);
  const { value: _ambiguous, ...rest } = token;
  return escapedEnd === token.end ? rest : { ...rest, uncertain: 'backslash' };
}

const SIMPLE_ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** Decodes E'...' content; octal and hex escapes give bytes, not text: undefined. */
function decodeEscapeString(body: string): string | undefined {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === "'") {
      out += "'";
      i++;
    } else if (c !== '\\') out += c;
    else {
      const next = body[++i] ?? '';
      if (/[0-7xX]/.test(next)) return undefined;
      const width = next === 'u' ? 4 : next === 'U' ? 8 : 0;
      if (width === 0) out += SIMPLE_ESCAPES[next] ?? next;
      else {
        const hex = body.slice(i + 1, i + 1 + width);
        if (!/^[0-9A-Fa-f]+$/.test(hex) || hex.length !== width) return undefined;
        const cp = parseInt(hex, 16);
        if (cp > 0x10ffff) return undefined;
        out += String.fromCodePoint(cp);
        i += width;
      }
    }
  }
  return out;
}

/** Decodes the Unicode escapes of U&'...' / U&"..." content (quotes already undoubled). */
export function decodeUnicodeEscapes(body: string, escape = '\\'): string | undefined {
  if (escape.length !== 1 || /[0-9A-Fa-f+'"\s]/.test(escape)) return undefined;
  let out = '';
  for (let i = 0; i < body.length; i++) {
    if (body[i] !== escape) {
      out += body[i];
      continue;
    }
    if (body[i + 1] === escape) {
      out += escape;
      i++;
      continue;
    }
    const plus = body[i + 1] === '+';
    const hex = body.slice(i + (plus ? 2 : 1), i + (plus ? 8 : 5));
    if (!/^[0-9A-Fa-f]+$/.test(hex) || hex.length !== (plus ? 6 : 4)) return undefined;
    const cp = parseInt(hex, 16);
    if (cp > 0x10ffff) return undefined;
    out += String.fromCodePoint(cp); // surrogate halves pair up in UTF-16 as in Postgres
    i += hex.length + (plus ? 1 : 0);
  }
  return out;
}

function withValue(token: Token, value: string | undefined): Token {
  const { value: _old, ...rest } = token;
  return value === undefined ? rest : { ...rest, value };
}

/** Identifier, or a literal introduced by E' N' B' X' U&' U&". */
function wordToken(sql: string, pos: number): Token {
  const c = sql[pos]!.toLowerCase();
  const next = sql[pos + 1];
  if (next === "'") {
    if (c === 'e') {
      const token = quotedToken(sql, 'string', pos, pos + 2, "'", true);
      return token.uncertain ? token : withValue(token, decodeEscapeString(sql.slice(pos + 2, token.end - 1)));
    }
    if (c === 'n') return standardString(sql, pos, pos + 2);
    if (c === 'b' || c === 'x') {
      const close = sql.indexOf("'", pos + 2);
      if (close < 0) return make(sql, 'bit-string', pos, sql.length, { uncertain: 'unterminated' });
      return make(sql, 'bit-string', pos, close + 1, { value: sql.slice(pos + 2, close) });
    }
  }
  if (c === 'u' && next === '&' && (sql[pos + 2] === "'" || sql[pos + 2] === '"')) {
    const quote = sql[pos + 2]!;
    const token = quotedToken(sql, quote === "'" ? 'string' : 'quoted-identifier', pos, pos + 3, quote, false);
    if (token.uncertain) return token;
    const body = token.text.slice(3, -1).replaceAll(quote + quote, quote);
    return withValue(token, unicodeValue(token, decodeUnicodeEscapes(body)));
  }
  const end = sticky(IDENTIFIER, sql, pos);
  return make(sql, 'identifier', pos, end, { value: truncateIdentifier(foldIdentifier(sql.slice(pos, end))) });
}

function unicodeValue(token: Token, decoded: string | undefined): string | undefined {
  return token.kind === 'quoted-identifier' && decoded !== undefined ? truncateIdentifier(decoded) : decoded;
}

/** End (exclusive) of the $n parameter at `pos`; `pos` when there is none. */
export function parameterEnd(sql: string, pos: number): number {
  return sticky(PARAMETER, sql, pos);
}

/**
 * The $tag$ (or $$) opening a dollar-quoted string at `pos`: where the delimiter ends, and where
 * the string ends after its closing delimiter (exclusive; -1 when unterminated). Null when no
 * delimiter starts at `pos`.
 */
export function dollarQuote(sql: string, pos: number): { delimiterEnd: number; end: number } | null {
  const delimiterEnd = sticky(DOLLAR_DELIMITER, sql, pos);
  if (delimiterEnd === pos) return null;
  const close = sql.indexOf(sql.slice(pos, delimiterEnd), delimiterEnd);
  return { delimiterEnd, end: close < 0 ? -1 : close + delimiterEnd - pos };
}

function dollarToken(sql: string, pos: number): Token {
  const paramEnd = parameterEnd(sql, pos);
  if (paramEnd > pos) return make(sql, 'parameter', pos, paramEnd);
  const quote = dollarQuote(sql, pos);
  if (quote === null) return make(sql, 'other', pos, pos + 1);
  if (quote.end < 0) return make(sql, 'dollar-string', pos, sql.length, { uncertain: 'unterminated' });
  return make(sql, 'dollar-string', pos, quote.end, { value: sql.slice(quote.delimiterEnd, quote.end - (quote.delimiterEnd - pos)) });
}

/** End (exclusive) of the `--` or (nested) `/* *\/` comment at `pos`; -1 when a block comment is unterminated. */
export function commentEnd(sql: string, pos: number): number {
  if (sql.charCodeAt(pos) === 0x2d) {
    let end = pos + 2;
    while (end < sql.length && sql[end] !== '\n' && sql[end] !== '\r') end++;
    return end;
  }
  let depth = 0;
  for (let i = pos; i < sql.length; i++) {
    if (sql[i] === '/' && sql[i + 1] === '*') {
      depth++;
      i++;
    } else if (sql[i] === '*' && sql[i + 1] === '/') {
      i++;
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

function commentToken(sql: string, pos: number): Token {
  const end = commentEnd(sql, pos);
  return end < 0 ? make(sql, 'comment', pos, sql.length, { uncertain: 'unterminated' }) : make(sql, 'comment', pos, end);
}

/** Where the + and - that scan.l split off an operator run end (tokenize() keeps one per text). */
interface OperatorRun {
  signsEnd: number;
}

/**
 * A run of operator characters, cut before `--` or `/*`; trailing + and - split off as scan.l
 * does. Rescanned, each + or - split off is an operator of its own: `run` remembers where they
 * end, so a long run is scanned once rather than once per character (a 1 MB `+-+-...` took minutes).
 */
function operatorToken(sql: string, pos: number, run: OperatorRun): Token {
  if (pos < run.signsEnd) return make(sql, 'operator', pos, pos + 1);
  let end = pos + 1;
  while (end < sql.length && OPERATOR_CHARS.includes(sql[end]!) && !sql.startsWith('--', end) && !sql.startsWith('/*', end)) end++;
  const last = sql[end - 1];
  if (end - pos > 1 && (last === '+' || last === '-') && !/[~!@#^&|`?%]/.test(sql.slice(pos, end - 1))) {
    run.signsEnd = end;
    do end--;
    while (end - pos > 1 && (sql[end - 1] === '+' || sql[end - 1] === '-'));
  }
  return make(sql, 'operator', pos, end);
}

function scanToken(sql: string, pos: number, run: OperatorRun): Token {
  const c = sql[pos]!;
  const next = sql[pos + 1];
  if (isSpace(c)) {
    let end = pos + 1;
    while (isSpace(sql[end])) end++;
    return make(sql, 'whitespace', pos, end);
  }
  if ((c === '-' && next === '-') || (c === '/' && next === '*')) return commentToken(sql, pos);
  if (c === "'") return standardString(sql, pos, pos + 1);
  if (c === '"') return quotedToken(sql, 'quoted-identifier', pos, pos + 1, '"', false);
  if (c === '$') return dollarToken(sql, pos);
  if (isDigit(c) || (c === '.' && isDigit(next))) return make(sql, 'number', pos, sticky(NUMBER, sql, pos));
  if (c === ';') return make(sql, 'semicolon', pos, pos + 1);
  if ((c === ':' && next === ':') || (c === '.' && next === '.')) return make(sql, 'punctuation', pos, pos + 2);
  if (PUNCTUATION_CHARS.includes(c)) return make(sql, 'punctuation', pos, pos + 1);
  if (OPERATOR_CHARS.includes(c)) return operatorToken(sql, pos, run);
  IDENTIFIER.lastIndex = pos;
  if (IDENTIFIER.test(sql)) return wordToken(sql, pos);
  return make(sql, 'other', pos, pos + 1);
}

export function isSignificant(token: Token): boolean {
  return token.kind !== 'whitespace' && token.kind !== 'comment';
}

function nextSignificant(tokens: Token[], from: number, count: number): Token[] {
  const found: Token[] = [];
  for (let i = from; i < tokens.length && found.length < count; i++) if (isSignificant(tokens[i]!)) found.push(tokens[i]!);
  return found;
}

/** `U&'...' UESCAPE '!'`: re-decodes the literal or identifier with the given escape character. */
function applyUescape(tokens: Token[]): void {
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.uncertain || !/^[uU]&/.test(token.text)) continue;
    const [keyword, escape] = nextSignificant(tokens, i + 1, 2);
    if (keyword?.kind !== 'identifier' || keyword.value !== 'uescape') continue;
    const body = token.text.slice(3, -1).replaceAll(token.text[2]! + token.text[2]!, token.text[2]!);
    const escapeChar = escape?.kind === 'string' && !/^[eEuUnN]/.test(escape.text) ? escape.value : undefined;
    const decoded = escapeChar === undefined ? undefined : decodeUnicodeEscapes(body, escapeChar);
    tokens[i] = withValue(token, unicodeValue(token, decoded));
  }
}

/** Splits `sql` into tokens covering it exactly; never throws. */
export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  const run: OperatorRun = { signsEnd: -1 };
  for (let pos = 0; pos < sql.length; ) {
    const token = scanToken(sql, pos, run);
    tokens.push(token);
    pos = token.end;
  }
  applyUescape(tokens);
  return tokens;
}

/** psql's heuristic: inside CREATE [OR REPLACE] FUNCTION|PROCEDURE, BEGIN/CASE ... END nest. */
class RoutineBodyTracker {
  private words: string[] = [];
  depth = 0;

  reset(): void {
    this.words = [];
    this.depth = 0;
  }

  see(word: string, parenDepth: number): void {
    if (this.words.length < 4) this.words.push(word);
    if (parenDepth !== 0 || (word !== 'begin' && word !== 'case' && word !== 'end')) return;
    const [first, second, third, fourth] = this.words;
    const routine = (kind: string | undefined): boolean => kind === 'function' || kind === 'procedure';
    const isRoutine = first === 'create' && (routine(second) || (second === 'or' && third === 'replace' && routine(fourth)));
    if (!isRoutine) return;
    if (word === 'begin') this.depth++;
    else if (word === 'case' && this.depth > 0) this.depth++;
    else if (word === 'end' && this.depth > 0) this.depth--;
  }
}

/** Statements with at least one token that is not whitespace or a comment, in order. */
export function splitStatements(sql: string, tokens: Token[] = tokenize(sql)): SqlStatement[] {
  const statements: SqlStatement[] = [];
  const routine = new RoutineBodyTracker();
  let parenDepth = 0;
  let first = 0;
  const close = (last: number, end: number): void => {
    const own = tokens.slice(first, last);
    if (own.some(isSignificant)) {
      const start = own[0]!.start;
      statements.push({ text: sql.slice(start, end), start, end, tokens: own, unbalanced: parenDepth > 0 || routine.depth > 0 });
    }
  };
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind === 'identifier') routine.see(token.value!, parenDepth);
    else if (token.text === '(') parenDepth++;
    else if (token.text === ')') parenDepth = Math.max(0, parenDepth - 1);
    else if (token.kind === 'semicolon' && parenDepth === 0 && routine.depth === 0) {
      close(i, token.start);
      first = i + 1;
      routine.reset();
    }
  }
  close(tokens.length, sql.length);
  return statements;
}

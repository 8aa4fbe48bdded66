// SQL -> read/write classification with a named reason (PURE: no I/O, no logger).
//
// The real PostgreSQL 18 parser (libpg-query, WASM) decides; nothing here regex-classifies SQL.
// Invariants, each a safety net for "no write ever reaches a replica":
//   - text over `maxParseBytes` is not parsed and goes to the primary ('too-large'), and so does
//     text that could nest deeper than the parser's stack allows ('too-deep');
//   - a parse error goes to the primary ('parse-error'); the one text rescued is the documented
//     `SET ambassador.route = primary` typed unquoted (PRIMARY is a reserved word), judged as if
//     the value were quoted;
//   - a multi-statement text is a read only when every statement is a read (transaction ends,
//     FETCH/CLOSE and the like are neutral but never make a text a read by themselves);
//   - anything unknown (statement type, function, EXECUTE of a prepared name) is a write;
//   - a text learned as a write (learnWrite(), after a replica refused it) stays a write, and so
//     do the texts of its literal shape (the same statement with other numbers).
// Leading-comment hints: `route=primary` forces a write; `route=replica` only overrides the
// conservative function verdicts ('unknown-function:*', 'volatile-function:*') of a single
// statement, never a parse error, an oversize text, a learned write or a statement that
// certainly writes.
// Results are cached by literal shape (texts differing only in numeric literals share an entry;
// literal-shape.ts), else by exact text (about-LRU, bounded by entries and characters); learned writes
// are kept apart from the cache (bounded, oldest first), so they survive eviction and
// setCatalog(), which swaps the function catalog and clears the cache. classify() is synchronous:
// build through createClassifier(), which loads the WASM module once. The parser is imported only
// then: importing libpg-query instantiates its WASM module at once, about 8 MB of RSS that an
// ambassador without read/write splitting (the default) never uses.

import { Buffer } from 'node:buffer';
import type * as PgQuery from 'libpg-query';
import { functionPolicy, type FunctionCatalog, type FunctionPolicy } from './classifier-functions.ts';
import { TextCache, TextStore } from './classifier-cache.ts';
import { readHints, type StatementHints } from './classifier-hints.ts';
import { literalShape, sameLiteralShapeBytes } from './literal-shape.ts';
import { tokenize } from './sql-lexer.ts';
import {
  judgeStatement,
  type Directive,
  type RouteReason,
  type StatementKind,
  type StatementVerdict,
  type TransactionEffect,
} from './classifier-statements.ts';

export type { FunctionCatalog, ProcRow } from './classifier-functions.ts';
export { InMemoryFunctionCatalog, EMPTY_FUNCTION_CATALOG, catalogFromRows } from './classifier-functions.ts';
export type { Directive, RouteReason, StatementKind, TransactionEffect } from './classifier-statements.ts';

export interface Classification {
  route: 'read' | 'write';
  reason: RouteReason;
  kind: StatementKind;
  hint?: 'primary' | 'replica';
  retry?: 'off';
  /** The last transaction effect among the statements (the state the text leaves behind). */
  transaction?: TransactionEffect;
  /** SET/RESET ambassador.route / ambassador.min_lsn, merged over the statements. */
  directive?: Directive;
  /** Statements parsed; 0 when the text was empty, too large or did not parse. */
  statements: number;
  /** Each statement's reason, for multi-statement texts. */
  parts?: RouteReason[];
}

export interface ClassifierOptions {
  /** Texts longer than this (UTF-8 bytes) are not parsed and go to the primary. Default 64 KiB. */
  maxParseBytes?: number;
  /** Cached classifications (at most). Default 10000. */
  cacheEntries?: number;
  /** Characters of cached texts (about, at most). Default 16 Mi. */
  cacheChars?: number;
  /** Texts learned as writes (at most; the oldest are forgotten first). Default 10000. */
  learnedEntries?: number;
  /** Characters of learned texts (at most). Default 4 Mi. */
  learnedChars?: number;
  functions: FunctionCatalog;
  /** Functions known safe even if volatile (`name` or `schema.name`). */
  allow?: string[];
  /** Functions that always write (`name` or `schema.name`). */
  deny?: string[];
}

export interface ClassifierStats {
  hits: number;
  misses: number;
  parseErrors: number;
  /** Texts not parsed: over maxParseBytes ('too-large') or possibly too deep ('too-deep'). */
  tooLarge: number;
  cached: number;
  /** Texts held as learned writes. */
  learned: number;
}

/** 16 KiB parses in ~10 ms (blocking); larger statements go to the primary unparsed. */
export const CLASSIFIER_DEFAULTS = {
  maxParseBytes: 16 * 1024,
  cacheEntries: 10_000,
  cacheChars: 16 * 1024 * 1024,
  learnedEntries: 10_000,
  learnedChars: 4 * 1024 * 1024,
} as const;

const NEUTRAL: ReadonlySet<TransactionEffect | undefined> = new Set<TransactionEffect | undefined>([
  'commit', 'rollback', 'savepoint', 'release', 'rollback-to', 'follow',
]);
const OVERRIDABLE = /^(unknown|volatile)-function:/;
/** The reserved word PRIMARY as one whole token (identifiers continue with these characters). */
const PRIMARY_WORD = /^primary(?![A-Za-z0-9_$\u0080-\uffff])/i;

/** The parser, once loadClassifierModule() has imported it and loaded its WASM module. */
let parser: typeof PgQuery | null = null;

/** Imports the parser and loads its WASM module (once per process). */
export async function loadClassifierModule(): Promise<void> {
  if (parser !== null) return;
  const loaded = await import('libpg-query');
  await loaded.loadModule();
  parser = loaded;
}

/** The loaded parser (a Classifier exists only once it is: see its constructor). */
function loadedParser(): typeof PgQuery {
  if (parser === null) throw new Error('libpg-query is not loaded; build the classifier with createClassifier()');
  return parser;
}

/** Loads the parser, then builds a Classifier whose classify() is synchronous. */
export async function createClassifier(options: ClassifierOptions): Promise<Classifier> {
  await loadClassifierModule();
  return new Classifier(options);
}

function exceedsBytes(sql: string, maxBytes: number): boolean {
  if (sql.length > maxBytes) return true; // UTF-8 never has fewer bytes than UTF-16 units
  if (sql.length * 3 <= maxBytes) return false;
  return Buffer.byteLength(sql, 'utf8') > maxBytes;
}

/**
 * Operator characters and NOTs a text may hold and still be parsed. A chain of prefix operators
 * (`select - - - ... 1`, or `-+-+...`) makes the parser recurse on the native stack it shares with
 * JavaScript: some 8,000 levels overflow it (a RangeError out of the WASM code), and after a few
 * dozen overflows the module is corrupt and every later parse fails ("memory access out of
 * bounds"). Each level of such a chain takes an operator or a NOT, so fewer cannot go that deep.
 */
const MAX_NESTING_TOKENS = 4000;
const OPERATOR_CHARS = new Uint8Array(128);
for (const char of '~!@#^&|`?+-*/%<>=') OPERATOR_CHARS[char.charCodeAt(0)] = 1;

/** Whether `sql` might nest deeper than the parser can take (see MAX_NESTING_TOKENS). */
function mayNestTooDeep(sql: string): boolean {
  if (sql.length <= MAX_NESTING_TOKENS) return false;
  let count = sql.match(/not/gi)?.length ?? 0;
  for (let i = 0; i < sql.length; i++) count += OPERATOR_CHARS[sql.charCodeAt(i)] ?? 0;
  if (count <= MAX_NESTING_TOKENS) return false;
  // Strings and comments may hold any number of those characters: count operator tokens only.
  count = 0;
  for (const token of tokenize(sql)) {
    if (token.kind === 'operator') count += token.text.length;
    else if (token.kind === 'identifier' && token.value === 'not') count += 1;
  }
  return count > MAX_NESTING_TOKENS;
}

function fromVerdict(verdict: StatementVerdict, statements: number): Classification {
  const result: Classification = { route: verdict.route, reason: verdict.reason, kind: verdict.kind, statements };
  if (verdict.transaction !== undefined) result.transaction = verdict.transaction;
  if (verdict.directive !== undefined) result.directive = { ...verdict.directive };
  return result;
}

/** Combines the verdicts of a multi-statement text. */
function combine(verdicts: StatementVerdict[]): Classification {
  if (verdicts.length === 1 && verdicts[0] !== undefined) return fromVerdict(verdicts[0], 1);
  const reads = verdicts.filter((verdict) => verdict.route === 'read').length;
  const writes = verdicts.filter((verdict) => verdict.route === 'write' && !NEUTRAL.has(verdict.transaction)).length;
  const isRead = writes === 0 && reads > 0;
  const result: Classification = {
    route: isRead ? 'read' : 'write',
    reason: isRead ? 'multi-statement-read' : 'multi-statement-write',
    kind: 'query',
    statements: verdicts.length,
    parts: verdicts.map((verdict) => verdict.reason),
  };
  for (const verdict of verdicts) {
    if (verdict.transaction !== undefined) result.transaction = verdict.transaction;
    if (verdict.directive !== undefined) result.directive = { ...result.directive, ...verdict.directive };
  }
  return result;
}

/** UTF-16 index of the `points`-th code point (the parser reports positions in characters). */
function codeUnitIndex(text: string, points: number): number {
  let index = 0;
  for (let point = 0; point < points && index < text.length; point += 1) {
    index += (text.codePointAt(index) ?? 0) > 0xffff ? 2 : 1;
  }
  return index;
}

/**
 * `SET [SESSION|LOCAL] ambassador.route {=|TO} primary` as users type it: PRIMARY is a reserved
 * word, so the parser rejects it. When the error points at that word, parse again with the word
 * quoted; the text is the directive only if that gives exactly one SET ambassador.route = 'primary'.
 */
function unquotedPrimaryDirective(sql: string, error: unknown, policy: FunctionPolicy): Classification | undefined {
  const { hasSqlDetails, parseSync } = loadedParser();
  const position = hasSqlDetails(error) ? error.sqlDetails?.cursorPosition : undefined;
  if (position === undefined) return undefined;
  const at = codeUnitIndex(sql, position);
  if (!PRIMARY_WORD.test(sql.slice(at, at + 'primary'.length + 1))) return undefined;
  let stmts: Array<{ stmt?: unknown }>;
  try {
    stmts = parseSync(`${sql.slice(0, at)}'primary'${sql.slice(at + 'primary'.length)}`).stmts ?? [];
  } catch {
    return undefined;
  }
  if (stmts.length !== 1) return undefined;
  const verdict = judgeStatement((stmts[0]?.stmt ?? {}) as Record<string, unknown>, policy);
  return verdict.directive?.route === 'primary' ? fromVerdict(verdict, 1) : undefined;
}

function applyHints(result: Classification, hints: StatementHints): Classification {
  if (hints.retry !== undefined) result.retry = hints.retry;
  if (hints.hint === undefined) return result;
  result.hint = hints.hint;
  if (hints.hint === 'primary' && result.route === 'read') {
    result.route = 'write';
    result.reason = 'hint';
  } else if (hints.hint === 'replica' && result.statements === 1 && OVERRIDABLE.test(result.reason)) {
    result.route = 'read';
    result.reason = 'hint';
  }
  return result;
}

export class Classifier {
  private readonly maxParseBytes: number;
  private policy: FunctionPolicy;
  private readonly cache: TextCache<Readonly<Classification>>;
  private readonly learned: TextStore<Readonly<Classification>>;
  private counters = { hits: 0, misses: 0, parseErrors: 0, tooLarge: 0 };
  /**
   * The last text classified from the cache, and its classification. A prepared statement, or an
   * unnamed one parsed again, brings the same string on every execution (request-builder.ts), and
   * comparing it costs far less than its literal shape and the hash of that; so does telling
   * that a simple Query differs from it only in numbers (classifyAsciiQuery; `lastShaped`: it was
   * cached by its literal shape), as each execution of one does. Only a text whose key the cache
   * took (never one too long for it); dropped whenever an entry may change (setCatalog, learnWrite).
   */
  private lastText: string | null = null;
  private lastShaped = false;
  private lastClassification: Readonly<Classification> | null = null;
  /**
   * lastText's bytes, `lastChunk[lastStart, lastEnd)`, when a simple Query brought it
   * (classifyAsciiQuery): the client's chunk it came in, kept as it is (nothing writes into a
   * chunk read; one of at most KEPT_CHUNK_MAX bytes stays alive with it); null: none.
   */
  private lastChunk: Uint8Array | null = null;
  private lastStart = 0;
  private lastEnd = 0;

  /** Throws unless the parser module is loaded (use createClassifier()). */
  constructor(options: ClassifierOptions) {
    this.maxParseBytes = options.maxParseBytes ?? CLASSIFIER_DEFAULTS.maxParseBytes;
    this.cache = new TextCache(
      options.cacheEntries ?? CLASSIFIER_DEFAULTS.cacheEntries,
      options.cacheChars ?? CLASSIFIER_DEFAULTS.cacheChars,
    );
    this.learned = new TextStore(
      options.learnedEntries ?? CLASSIFIER_DEFAULTS.learnedEntries,
      options.learnedChars ?? CLASSIFIER_DEFAULTS.learnedChars,
    );
    this.policy = functionPolicy(options.functions, options.allow, options.deny);
    loadedParser();
  }

  /**
   * Classifies a whole query text (one or more statements); cached by its literal shape (texts
   * that differ only in numbers share an entry; see literal-shape.ts), else by exact text.
   */
  classify(sql: string): Readonly<Classification> {
    if (sql === this.lastText) {
      this.counters.hits += 1;
      return this.lastClassification!;
    }
    if (exceedsBytes(sql, this.maxParseBytes)) {
      // Never parsed nor cached: its key (the literal shape, a pass over the whole text that
      // builds a copy: some 100 ms for a 3 MB IN list of numbers) would be made for nothing.
      this.counters.misses += 1;
      return this.judge(sql);
    }
    const key = cacheKey(sql);
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      this.counters.hits += 1;
      return this.remember(sql, key !== sql, cached);
    }
    this.counters.misses += 1;
    const result = this.learned.get(key) ?? this.judge(sql);
    // Remembered only when cached: what the cache may not hold (too large), neither may this.
    if (result.reason === 'too-large' || !this.cache.set(key, result)) return result;
    return this.remember(sql, key !== sql, result);
  }

  /**
   * classify() for the text of a simple Query as it came, `bytes[start, end)`, ASCII only (a text
   * plainQueryBytes took: request-builder.ts UNDECODED). The text after one of its literal shape
   * (or the same text) is told from its bytes, without making a string of it. The classifier may
   * keep `bytes` to compare the next text with: the caller never writes into them afterwards.
   */
  classifyAsciiQuery(bytes: Buffer, start: number, end: number): Readonly<Classification> {
    const last = this.lastChunk;
    if (last !== null && end - start <= this.maxParseBytes) {
      const same = this.lastShaped
        ? sameLiteralShapeBytes(last, this.lastStart, this.lastEnd, bytes, start, end)
        : sameBytes(last, this.lastStart, this.lastEnd, bytes, start, end);
      if (same) {
        this.counters.hits += 1;
        return this.lastClassification!;
      }
    }
    const sql = bytes.toString('utf8', start, end);
    const classification = this.classify(sql);
    if (this.lastText === sql && this.lastChunk === null && bytes.length <= KEPT_CHUNK_MAX) {
      this.lastChunk = bytes;
      this.lastStart = start;
      this.lastEnd = end;
    }
    return classification;
  }

  private forgetLast(): void {
    this.lastText = null;
    this.lastShaped = false;
    this.lastClassification = null;
    this.lastChunk = null;
  }

  /** `shaped`: the text is cached by its literal shape (its key is not the text itself). */
  private remember(sql: string, shaped: boolean, classification: Readonly<Classification>): Readonly<Classification> {
    this.lastText = sql;
    this.lastShaped = shaped;
    this.lastClassification = classification;
    this.lastChunk = null;
    return classification;
  }

  /** Judges with `functions` from now on (allow/deny kept) and drops every cached classification. */
  setCatalog(functions: FunctionCatalog): void {
    this.policy = { ...this.policy, catalog: functions };
    this.cache.clear();
    this.forgetLast();
  }

  /**
   * From now on this text (and its literal shape) is a write ('learned-write') whatever the parser says; the other
   * fields (kind, transaction, directive, hints) stay those of its classification. For a text a
   * replica refused (SQLSTATE 25006). A text over maxParseBytes already writes and is not kept.
   */
  learnWrite(sql: string): void {
    if (exceedsBytes(sql, this.maxParseBytes)) return;
    const key = cacheKey(sql);
    const original = this.cache.get(key) ?? this.judge(sql);
    const learned: Readonly<Classification> = Object.freeze({ ...original, route: 'write', reason: 'learned-write' });
    // By shape: the same statement with other numbers would be refused the same way.
    this.learned.set(key, learned);
    this.cache.set(key, learned);
    this.forgetLast();
  }

  stats(): ClassifierStats {
    return { ...this.counters, cached: this.cache.size, learned: this.learned.size };
  }

  private judge(sql: string): Readonly<Classification> {
    return Object.freeze(applyHints(this.classifyText(sql), readHints(sql)));
  }

  private classifyText(sql: string): Classification {
    if (exceedsBytes(sql, this.maxParseBytes)) {
      this.counters.tooLarge += 1;
      return { route: 'write', reason: 'too-large', kind: 'query', statements: 0 };
    }
    if (sql.trim() === '') return { route: 'read', reason: 'empty', kind: 'query', statements: 0 };
    if (mayNestTooDeep(sql)) {
      this.counters.tooLarge += 1;
      return { route: 'write', reason: 'too-deep', kind: 'query', statements: 0 };
    }
    let stmts: Array<{ stmt?: unknown }>;
    try {
      stmts = loadedParser().parseSync(sql).stmts ?? [];
    } catch (error) {
      const directive = unquotedPrimaryDirective(sql, error, this.policy);
      if (directive !== undefined) return directive;
      this.counters.parseErrors += 1;
      return { route: 'write', reason: 'parse-error', kind: 'query', statements: 0 };
    }
    if (stmts.length === 0) return { route: 'read', reason: 'empty', kind: 'query', statements: 0 };
    try {
      return combine(stmts.map((entry) => judgeStatement((entry.stmt ?? {}) as Record<string, unknown>, this.policy)));
    } catch {
      // A tree this walk did not expect: the primary runs anything, and no client text may
      // throw out of classify() (it runs in a socket's data handler).
      this.counters.parseErrors += 1;
      return { route: 'write', reason: 'parse-error', kind: 'query', statements: 0 };
    }
  }
}

/** Largest client chunk the classifier keeps for the bytes of its last simple Query (classifyAsciiQuery). */
const KEPT_CHUNK_MAX = 16 * 1024;

/** Whether `bytes[start, end)` are `kept[keptStart, keptEnd)`. */
function sameBytes(kept: Uint8Array, keptStart: number, keptEnd: number, bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start !== keptEnd - keptStart) return false;
  for (let i = keptStart, j = start; i < keptEnd; i++, j++) if (kept[i] !== bytes[j]) return false;
  return true;
}

/**
 * A text's cache key: its literal shape behind a NUL, or the text itself. So a shape is never
 * the key of a text a server runs (the protocol ends a query text at its first NUL, and a server
 * refuses one with bytes after it): `select ?`, a syntax error, is not taken for `select 1`.
 */
function cacheKey(sql: string): string {
  const shape = literalShape(sql);
  return shape === null ? sql : `\0${shape}`;
}

/** One line, e.g. `write reason=dml kind=query statements=1 hint=primary`. */
export function describeClassification(classification: Classification): string {
  const fields = [
    classification.route,
    `reason=${classification.reason}`,
    `kind=${classification.kind}`,
    `statements=${classification.statements}`,
  ];
  if (classification.parts !== undefined) fields.push(`parts=${classification.parts.join(',')}`);
  if (classification.transaction !== undefined) fields.push(`transaction=${classification.transaction}`);
  if (classification.directive?.route !== undefined) fields.push(`directive.route=${classification.directive.route}`);
  if (classification.directive?.minLsn !== undefined) fields.push(`directive.min_lsn=${classification.directive.minLsn}`);
  if (classification.directive?.retry !== undefined) fields.push(`directive.retry=${classification.directive.retry ? 'on' : 'off'}`);
  if (classification.hint !== undefined) fields.push(`hint=${classification.hint}`);
  if (classification.retry !== undefined) fields.push(`retry=${classification.retry}`);
  return fields.join(' ');
}

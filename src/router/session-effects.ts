// Which statements of one SQL text (a simple Query, or a Parse's query) change SESSION state,
// so that transaction pooling can replay settings on the next server and pin a client to its
// server while it holds state that cannot be replayed (PURE: no I/O).
//
// Conservative by design: when a form is not understood, the answer is a pin ('session-state'),
// never silence. A text the lexer could not make sense of (unterminated quote or comment, a
// string whose end depends on standard_conforming_strings, unbalanced parentheses or routine
// body) is `uncertain` and also carries a 'session-state' pin, so callers that only read
// `effects` stay safe. Effects come in statement order; whether they took effect (the
// transaction committed, no error) is the caller's business.

import { TextCache } from './classifier-cache.ts';
import { commentEnd, dollarQuote, isSignificant, parameterEnd, scanQuoted, splitStatements, tokenize, type Token } from './sql-lexer.ts';

export type PinReason = 'advisory-lock' | 'listen' | 'temp-table' | 'with-hold-cursor' | 'prepare-transaction' | 'sql-prepare' | 'session-state';

export type SessionEffect =
  | { kind: 'set'; name: string; statement: string }
  | { kind: 'set-config'; name: string; statement: string }
  | { kind: 'reset'; name: string }
  | { kind: 'reset-all' }
  | { kind: 'discard'; what: 'all' | 'temp' | 'plans' | 'sequences' }
  | { kind: 'pin'; reason: PinReason }
  /** Part of the contract but not produced: releases are told by discard, unlisten, advisory-unlock*, close-cursor and sql-deallocate. */
  | { kind: 'unpin'; reason: PinReason; target?: string }
  | { kind: 'listen'; channel: string } | { kind: 'unlisten'; channel: string | '*' }
  | { kind: 'advisory-lock' } | { kind: 'advisory-unlock' } | { kind: 'advisory-unlock-all' }
  | { kind: 'cursor-with-hold'; name: string } | { kind: 'close-cursor'; name: string | 'ALL' }
  | { kind: 'sql-prepare'; name: string } | { kind: 'sql-deallocate'; name: string | 'ALL' }
  | { kind: 'transaction'; action: 'begin' | 'commit' | 'rollback' | 'prepare-transaction' | 'savepoint' | 'release' | 'rollback-to' };

export interface StatementEffects {
  effects: SessionEffect[];
  /** Statements that are not empty (only whitespace and comments). */
  statements: number;
  /** Set when the lexer could not make sense of the text: callers pin conservatively. */
  uncertain: boolean;
  /**
   * The text with the bare value of each `SET ambassador.route = primary` quoted, when it has
   * one: PRIMARY is a reserved word, so Postgres's grammar (and the parser behind routing) reject
   * it bare. Only the ambassador reads the setting; where the statement reaches a server (in a
   * longer text, or with splitting off) the server takes it as a placeholder setting.
   */
  quoted?: string;
}

type Effects = SessionEffect[];
type Handler = (tokens: Token[], sql: string) => Effects;

const PIN_SESSION: SessionEffect = Object.freeze({ kind: 'pin', reason: 'session-state' });
const PIN_TEMP: SessionEffect = Object.freeze({ kind: 'pin', reason: 'temp-table' });
/** GUCs whose SET arguments are quoted as identifiers (GUC_LIST_QUOTE): SET 'a, b' is one element. */
const LIST_QUOTE_GUCS = new Set(['search_path', 'temp_tablespaces', 'session_preload_libraries', 'local_preload_libraries', 'shared_preload_libraries']);
const ADVISORY_CALLS: Record<string, SessionEffect> = {
  pg_advisory_lock: Object.freeze({ kind: 'advisory-lock' }),
  pg_try_advisory_lock: Object.freeze({ kind: 'advisory-lock' }),
  pg_advisory_lock_shared: Object.freeze({ kind: 'advisory-lock' }),
  pg_try_advisory_lock_shared: Object.freeze({ kind: 'advisory-lock' }),
  pg_advisory_unlock: Object.freeze({ kind: 'advisory-unlock' }),
  pg_advisory_unlock_shared: Object.freeze({ kind: 'advisory-unlock' }),
  pg_advisory_unlock_all: Object.freeze({ kind: 'advisory-unlock-all' }),
};
/** Heads whose function names are not calls (DROP FUNCTION pg_advisory_lock(bigint)). */
const NOT_EXECUTED_HEADS = new Set(['drop', 'comment', 'grant', 'revoke', 'security']);
/** CREATE <these>: bodies, defaults and queries are stored, not run now. */
const STORED_DEFINITIONS = new Set(['function', 'procedure', 'view', 'rule', 'trigger', 'policy', 'domain']);
const CREATE_MODIFIERS = new Set(['or', 'replace', 'global', 'local', 'temp', 'temporary', 'recursive', 'constraint', 'trusted', 'procedural']);

/** The unquoted keyword a token spells, lower-cased; undefined for anything else. */
const word = (token: Token | undefined): string | undefined => (token?.kind === 'identifier' ? token.value : undefined);
/** An identifier's name, quoted or not. */
const nameOf = (token: Token | undefined): string | undefined =>
  token?.kind === 'identifier' || token?.kind === 'quoted-identifier' ? token.value : undefined;
/** Punctuation or an operator spelled exactly `text`. */
const isText = (token: Token | undefined, text: string): boolean =>
  (token?.kind === 'punctuation' || token?.kind === 'operator') && token.text === text;
const isAssign = (token: Token | undefined): boolean => word(token) === 'to' || isText(token, '=');
const foldAscii = (name: string): string => name.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
const isPgTempName = (name: string | undefined): boolean => name !== undefined && /^pg_temp(?:_[0-9]+)?$/.test(name);
const source = (sql: string, tokens: Token[]): string => sql.slice(tokens[0]!.start, tokens[tokens.length - 1]!.end);

/** `a.b.c` starting at `from`: the folded, dotted name and the index after it. */
function dottedName(tokens: Token[], from: number): { name: string; next: number } | undefined {
  const first = nameOf(tokens[from]);
  if (first === undefined) return undefined;
  const parts = [first];
  let next = from + 1;
  while (isText(tokens[next], '.') && nameOf(tokens[next + 1]) !== undefined) {
    parts.push(nameOf(tokens[next + 1])!);
    next += 2;
  }
  return { name: foldAscii(parts.join('.')), next };
}

/** First element of a search_path value as SplitIdentifierString reads it. */
function firstListElement(value: string): string {
  const match = /^\s*(?:"((?:[^"]|"")*)"|([^\s,]*))/.exec(value)!;
  return match[1] !== undefined ? match[1].replaceAll('""', '"') : foldAscii(match[2] ?? '');
}

/** A search_path whose first element is pg_temp makes unqualified CREATE TABLE temporary. */
function searchPathPins(name: string, first: string | undefined): Effects {
  return name === 'search_path' && isPgTempName(first) ? [PIN_TEMP] : [];
}

/** SET name value / SET name TO DEFAULT, with `values` the tokens after the name (and TO/=). */
function assignment(name: string, values: Token[], tokens: Token[], sql: string, resetWords: string[]): Effects {
  if (values.length === 0) return name === 'client_encoding' ? [{ kind: 'reset', name }] : [PIN_SESSION];
  if (values.length === 1 && resetWords.includes(word(values[0]) ?? '')) return [{ kind: 'reset', name }];
  const first = values[0]!.kind === 'string' || nameOf(values[0]) !== undefined ? values[0]!.value : undefined;
  return [{ kind: 'set', name, statement: source(sql, tokens) }, ...searchPathPins(name, first)];
}

/** The SET forms with their own grammar (SET TIME ZONE, SET ROLE, ...); null for generic SET. */
function specialSet(tokens: Token[], at: number, sql: string): Effects | null {
  if (isAssign(tokens[at + 1])) return null;
  const [head, next] = [word(tokens[at]), word(tokens[at + 1])];
  const set = (name: string, from: number, resetWords: string[] = []): Effects => assignment(name, tokens.slice(from), tokens, sql, resetWords);
  if (head === 'time' && next === 'zone') return set('timezone', at + 2, ['local', 'default']);
  if (head === 'role') return set('role', at + 1);
  if (head === 'session' && next === 'authorization') return set('session_authorization', at + 2, ['default']);
  if (head === 'session' && next === 'characteristics') return set('default_transaction_characteristics', at + 2);
  if (head === 'schema') return set('search_path', at + 1);
  if (head === 'names') return set('client_encoding', at + 1, ['default']);
  if (head === 'xml' && next === 'option') return set('xmloption', at + 2);
  if (head === 'transaction' || head === 'constraints' || head === 'catalog') return []; // transaction-scoped, or an error
  return null;
}

function setEffects(tokens: Token[], sql: string): Effects {
  let at = 1;
  if (word(tokens[at]) === 'local') return [];
  if (word(tokens[at]) === 'session' && !['authorization', 'characteristics'].includes(word(tokens[at + 1]) ?? '')) at++;
  const special = specialSet(tokens, at, sql);
  if (special) return special;
  const parsed = dottedName(tokens, at);
  if (!parsed) return [PIN_SESSION];
  if (word(tokens[parsed.next]) === 'from' && word(tokens[parsed.next + 1]) === 'current') return []; // keeps the value it has
  if (!isAssign(tokens[parsed.next])) return [PIN_SESSION];
  return assignment(parsed.name, tokens.slice(parsed.next + 1), tokens, sql, ['default']);
}

function resetEffects(tokens: Token[]): Effects {
  const [first, second] = [word(tokens[1]), word(tokens[2])];
  if (first === 'all') return [{ kind: 'reset-all' }];
  if (first === 'time' && second === 'zone') return [{ kind: 'reset', name: 'timezone' }];
  if (first === 'session' && second === 'authorization') return [{ kind: 'reset', name: 'session_authorization' }];
  if (first === 'transaction' && second === 'isolation') return [{ kind: 'reset', name: 'transaction_isolation' }];
  const parsed = dottedName(tokens, 1);
  return parsed ? [{ kind: 'reset', name: parsed.name }] : [PIN_SESSION];
}

function discardEffects(tokens: Token[]): Effects {
  const what = word(tokens[1]);
  if (what === 'all' || what === 'plans' || what === 'sequences') return [{ kind: 'discard', what }];
  if (what === 'temp' || what === 'temporary') return [{ kind: 'discard', what: 'temp' }];
  return [PIN_SESSION];
}

function declareEffects(tokens: Token[]): Effects {
  const name = nameOf(tokens[1]);
  let at = 2;
  while (['binary', 'asensitive', 'insensitive', 'no', 'scroll'].includes(word(tokens[at]) ?? '')) at++;
  if (name === undefined || word(tokens[at]) !== 'cursor') return [PIN_SESSION];
  const [hold, after] = [word(tokens[at + 1]), word(tokens[at + 2])];
  if (hold === 'with' && after === 'hold') return [{ kind: 'cursor-with-hold', name }];
  return hold === 'for' || (hold === 'without' && after === 'hold') ? [] : [PIN_SESSION];
}

/** CLOSE x / DEALLOCATE x: unquoted ALL means every one; a quoted "ALL" cannot be told apart, so it releases nothing. */
function releaseTarget(token: Token | undefined): string | null | undefined {
  if (word(token) === 'all') return 'ALL';
  const name = nameOf(token);
  return name === 'ALL' ? null : name;
}

function closeEffects(tokens: Token[]): Effects {
  const name = releaseTarget(tokens[1]);
  return name === null ? [] : name === undefined ? [PIN_SESSION] : [{ kind: 'close-cursor', name }];
}

function deallocateEffects(tokens: Token[]): Effects {
  const name = releaseTarget(tokens[word(tokens[1]) === 'prepare' && tokens.length > 2 ? 2 : 1]);
  return name === null ? [] : name === undefined ? [PIN_SESSION] : [{ kind: 'sql-deallocate', name }];
}

/** PREPARE TRANSACTION 'gid', or PREPARE name [(types)] AS statement (whose effects happen at EXECUTE: pin). */
function prepareEffects(tokens: Token[], sql: string): Effects {
  if (word(tokens[1]) === 'transaction' && tokens[2]?.kind === 'string') {
    return [{ kind: 'transaction', action: 'prepare-transaction' }, { kind: 'pin', reason: 'prepare-transaction' }];
  }
  const name = nameOf(tokens[1]);
  let depth = 0;
  let at = 2;
  for (; at < tokens.length && !(depth === 0 && word(tokens[at]) === 'as'); at++) depth += isText(tokens[at], '(') ? 1 : isText(tokens[at], ')') ? -1 : 0;
  if (name === undefined || at + 1 >= tokens.length) return [PIN_SESSION];
  const body = statementEffects(tokens.slice(at + 1), sql);
  return [{ kind: 'sql-prepare', name }, ...(body.length > 0 ? [PIN_SESSION] : [])];
}

function chained(tokens: Token[]): boolean {
  return tokens.some((token, i) => word(token) === 'chain' && word(tokens[i - 1]) === 'and');
}

function endEffects(action: 'commit' | 'rollback'): Handler {
  return (tokens) => {
    if (word(tokens[1]) === 'prepared') return [];
    if (action === 'rollback' && tokens.slice(1, 4).some((token) => word(token) === 'to')) return [{ kind: 'transaction', action: 'rollback-to' }];
    const effects: Effects = [{ kind: 'transaction', action }];
    if (chained(tokens)) effects.push({ kind: 'transaction', action: 'begin' });
    return effects;
  };
}

/** CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP ..., or anything created in pg_temp. */
function createEffects(tokens: Token[]): Effects {
  let at = 1;
  if (word(tokens[at]) === 'or' && word(tokens[at + 1]) === 'replace') at += 2;
  if (word(tokens[at]) === 'global' || word(tokens[at]) === 'local') at++;
  const temporary = word(tokens[at]) === 'temp' || word(tokens[at]) === 'temporary';
  const inPgTemp = tokens.some((token, i) => isPgTempName(nameOf(token)) && isText(tokens[i + 1], '.'));
  if (!temporary && !inPgTemp) return [];
  const dropsAtCommit = tokens.some((token, i) => word(token) === 'drop' && word(tokens[i - 1]) === 'commit' && word(tokens[i - 2]) === 'on');
  return dropsAtCommit ? [] : [PIN_TEMP];
}

/** EXPLAIN [ANALYZE] [VERBOSE] | EXPLAIN (options): the explained statement's effects (EXPLAIN DECLARE opens no cursor). */
function explainEffects(tokens: Token[], sql: string): Effects {
  let at = 1;
  if (isText(tokens[1], '(')) {
    while (at < tokens.length && !isText(tokens[at], ')')) at++;
    at++;
  } else while (['analyze', 'analyse', 'verbose'].includes(word(tokens[at]) ?? '')) at++;
  if (at >= tokens.length) return [];
  return statementEffects(tokens.slice(at), sql).filter((effect) => effect.kind !== 'cursor-with-hold');
}

const HANDLERS: Record<string, Handler> = {
  set: setEffects,
  reset: resetEffects,
  discard: discardEffects,
  listen: (tokens) => (nameOf(tokens[1]) === undefined ? [PIN_SESSION] : [{ kind: 'listen', channel: nameOf(tokens[1])! }]),
  unlisten: (tokens) => {
    if (isText(tokens[1], '*')) return [{ kind: 'unlisten', channel: '*' }];
    const channel = nameOf(tokens[1]);
    return channel === undefined ? [PIN_SESSION] : channel === '*' ? [] : [{ kind: 'unlisten', channel }];
  },
  load: () => [PIN_SESSION],
  declare: declareEffects,
  close: closeEffects,
  prepare: prepareEffects,
  deallocate: deallocateEffects,
  begin: () => [{ kind: 'transaction', action: 'begin' }],
  start: (tokens) => (word(tokens[1]) === 'transaction' ? [{ kind: 'transaction', action: 'begin' }] : []),
  commit: endEffects('commit'),
  end: endEffects('commit'),
  rollback: endEffects('rollback'),
  abort: endEffects('rollback'),
  savepoint: () => [{ kind: 'transaction', action: 'savepoint' }],
  release: () => [{ kind: 'transaction', action: 'release' }],
  create: createEffects,
  explain: explainEffects,
};

function isStoredDefinition(tokens: Token[]): boolean {
  const head = word(tokens[0]) ?? '';
  if (NOT_EXECUTED_HEADS.has(head)) return true;
  if (head !== 'create') return false;
  let at = 1;
  while (CREATE_MODIFIERS.has(word(tokens[at]) ?? '')) at++;
  return STORED_DEFINITIONS.has(word(tokens[at]) ?? '');
}

/** Arguments of the call whose `(` is at `open`, split at top-level commas. */
function callArguments(tokens: Token[], open: number): Token[][] {
  const args: Token[][] = [[]];
  let depth = 0;
  for (let i = open + 1; i < tokens.length; i++) {
    const text = tokens[i]!.kind === 'punctuation' ? tokens[i]!.text : '';
    if ((text === ')' || text === ']') && depth-- === 0) break;
    if (text === '(' || text === '[') depth++;
    if (text === ',' && depth === 0) args.push([]);
    else args[args.length - 1]!.push(tokens[i]!);
  }
  return args.length === 1 && args[0]!.length === 0 ? [] : args;
}

/** A string literal, optionally cast to text or varchar, whose value is known. */
function literalText(arg: Token[] | undefined): string | undefined {
  if (!arg || arg[0]?.kind !== 'string') return undefined;
  const cast = arg.length === 3 && isText(arg[1], '::') && ['text', 'varchar'].includes(word(arg[2]) ?? '');
  return arg.length === 1 || cast ? arg[0].value : undefined;
}

/** Postgres's parse_bool: unique prefixes of true/false/yes/no, on/off, 1/0, around whitespace. */
function parseBoolean(text: string): boolean | undefined {
  const value = text.trim().toLowerCase();
  if (value === '') return undefined;
  if ('true'.startsWith(value) || 'yes'.startsWith(value) || value === 'on' || value === '1') return true;
  if ('false'.startsWith(value) || 'no'.startsWith(value) || value === 'of' || value === 'off' || value === '0') return false;
  return undefined;
}

function literalBoolean(arg: Token[] | undefined): boolean | undefined {
  if (!arg) return undefined;
  const cast = arg.length === 3 && isText(arg[1], '::') && ['bool', 'boolean'].includes(word(arg[2]) ?? '');
  if (arg.length !== 1 && !cast) return undefined;
  const keyword = word(arg[0]);
  if (keyword === 'true' || keyword === 'false') return keyword === 'true';
  return arg[0]?.kind === 'string' && arg[0].value !== undefined ? parseBoolean(arg[0].value) : undefined;
}

/** A literal that reads the same whatever standard_conforming_strings is. */
function quoteLiteral(value: string): string {
  const doubled = value.replaceAll("'", "''");
  return value.includes('\\') ? `E'${doubled.replaceAll('\\', '\\\\')}'` : `'${doubled}'`;
}

/** set_config(name, value, is_local): session-level with literal arguments → a replayable statement. */
function setConfigEffects(args: Token[][]): Effects {
  const local = literalBoolean(args[2]);
  if (args.length === 3 && local === true) return [];
  const [name, value] = [literalText(args[0]), literalText(args[1])];
  if (args.length !== 3 || local === undefined || name === undefined || value === undefined) return [PIN_SESSION];
  const key = foldAscii(name);
  const statement = LIST_QUOTE_GUCS.has(key)
    ? `SELECT pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false)`
    : `SET "${name.replaceAll('"', '""')}" TO ${quoteLiteral(value)}`;
  return [{ kind: 'set-config', name: key, statement }, ...searchPathPins(key, firstListElement(value))];
}

/** SELECT ... INTO [GLOBAL|LOCAL] TEMP[ORARY] x, or INTO pg_temp.x. */
function selectsIntoTemp(tokens: Token[], at: number): boolean {
  if (word(tokens[at]) !== 'into' || ['insert', 'merge'].includes(word(tokens[at - 1]) ?? '')) return false;
  const next = word(tokens[at + 1]) === 'global' || word(tokens[at + 1]) === 'local' ? at + 2 : at + 1;
  const target = word(tokens[next]);
  return target === 'temp' || target === 'temporary' || (isPgTempName(nameOf(tokens[next])) && isText(tokens[next + 1], '.'));
}

/** set_config and advisory lock calls anywhere in the statement, and SELECT INTO TEMP. */
function scannedEffects(tokens: Token[]): Effects {
  const effects: Effects = [];
  for (let i = 0; i < tokens.length; i++) {
    if (selectsIntoTemp(tokens, i)) effects.push(PIN_TEMP);
    const name = nameOf(tokens[i]);
    if (name === undefined || !isText(tokens[i + 1], '(')) continue;
    const before = isText(tokens[i - 1], '.') ? tokens[i - 3] : tokens[i - 1];
    if (['function', 'procedure', 'routine', 'aggregate'].includes(word(before) ?? '')) continue;
    if (name === 'set_config') effects.push(...setConfigEffects(callArguments(tokens, i + 1)));
    else if (Object.hasOwn(ADVISORY_CALLS, name)) effects.push(ADVISORY_CALLS[name]!);
  }
  return effects;
}

/** Effects of one statement, given its significant tokens. */
function statementEffects(tokens: Token[], sql: string): Effects {
  const head = word(tokens[0]) ?? '';
  const handler = Object.hasOwn(HANDLERS, head) ? HANDLERS[head] : undefined;
  const effects = handler ? handler(tokens, sql) : [];
  if (head === 'explain' || head === 'prepare' || isStoredDefinition(tokens)) return effects;
  return [...effects, ...scannedEffects(tokens)];
}

/** Keeps the first pin of each reason. */
function withoutRepeatedPins(effects: Effects): Effects {
  const seen = new Set<PinReason>();
  return effects.filter((effect) => {
    if (effect.kind !== 'pin') return true;
    if (seen.has(effect.reason)) return false;
    seen.add(effect.reason);
    return true;
  });
}

export function analyzeSessionEffects(sql: string): StatementEffects {
  const tokens = tokenize(sql);
  const statements = splitStatements(sql, tokens);
  const effects: Effects = [];
  let uncertain = tokens.some((token) => token.uncertain !== undefined);
  let bare: Token[] | null = null;
  for (const statement of statements) {
    uncertain ||= statement.unbalanced;
    const significant = statement.tokens.filter(isSignificant);
    effects.push(...statementEffects(significant, sql));
    const value = bareReservedValue(significant);
    if (value !== undefined) (bare ??= []).push(value);
  }
  if (uncertain) effects.push(PIN_SESSION);
  const result: StatementEffects = { effects: withoutRepeatedPins(effects), statements: statements.length, uncertain };
  if (bare !== null && !uncertain) result.quoted = quoteTokens(sql, bare);
  return result;
}

/** The bare `primary` of a `SET [SESSION|LOCAL] ambassador.route {=|TO} primary` statement. */
function bareReservedValue(tokens: Token[]): Token | undefined {
  if (word(tokens[0]) !== 'set') return undefined;
  const scope = word(tokens[1]);
  const parsed = dottedName(tokens, scope === 'session' || scope === 'local' ? 2 : 1);
  if (parsed?.name !== 'ambassador.route' || !isAssign(tokens[parsed.next]) || tokens.length !== parsed.next + 2) return undefined;
  const value = tokens[parsed.next + 1];
  return word(value) === 'primary' ? value : undefined;
}

/** `sql` with each of `tokens` (keywords, in text order) written as a string literal of the word. */
function quoteTokens(sql: string, tokens: readonly Token[]): string {
  let out = '';
  let copied = 0;
  for (const token of tokens) {
    out += `${sql.slice(copied, token.start)}'${token.value!}'`;
    copied = token.end;
  }
  return out + sql.slice(copied);
}

const PLAIN_STATEMENT: StatementEffects = Object.freeze({ effects: Object.freeze([]) as unknown as Effects, statements: 1, uncertain: false });
/** Words the full analysis looks for anywhere in a statement (set_config, the advisory lock functions, INTO TEMP). */
const SCANNED_WORDS = ['set_config', 'advisory', 'temp'];
/** Any of them anywhere (one native search: most texts have none, and skip the per-character check). */
const ANY_SCANNED_WORD = new RegExp(SCANNED_WORDS.join('|'), 'i');
const SPACE = new Uint8Array(128);
for (const c of ' \t\n\r\f\v') SPACE[c.charCodeAt(0)] = 1;

/** Whether one of SCANNED_WORDS starts at `at` (any case). */
function scannedWordAt(sql: string, at: number): boolean {
  for (const word of SCANNED_WORDS) {
    let i = 0;
    while (i < word.length && lowerAscii(sql.charCodeAt(at + i)) === word.charCodeAt(i)) i++;
    if (i === word.length) return true;
  }
  return false;
}

/** An ASCII capital as its small letter; any other code as it is. */
function lowerAscii(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
}

/** Could a scanned word start with this character (s, a, t, any case)? */
function mayStartScannedWord(c: number): boolean {
  const lower = c | 0x20;
  return lower === 0x73 || lower === 0x61 || lower === 0x74;
}

/** Whether `c` continues an identifier (a letter, digit, _, $ or anything past ASCII). */
function identifierChar(c: number): boolean {
  const lower = c | 0x20;
  return (lower >= 0x61 && lower <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x24 || c >= 0x80;
}

/** Index of the quote closing a run opened at `open` as the lexer reads it ('' and, with `escapes`, a backslash escape); -1 if none. */
function quotedEnd(sql: string, open: number, escapes: boolean): number {
  const end = scanQuoted(sql, open + 1, "'", escapes);
  return end === null ? -1 : end - 1;
}

/**
 * The index of the quote that closes the literal opened at `open`, read as the lexer reads it, or
 * -1 when it is unterminated or its end depends on standard_conforming_strings (a backslash in a
 * '...' string). E'...' takes backslash escapes; B'...' and X'...' end at the next quote.
 * `backslash`: the first backslash at or after `open`, or -1 (found by the caller, which moves it
 * forward only as far as it reads: each literal searching the rest of the text would be quadratic).
 */
function literalEnd(sql: string, open: number, backslash: number): number {
  const before = sql.charCodeAt(open - 1);
  if (identifierChar(before)) {
    // Only a one-letter word is a prefix (E'...'); in anything longer (1E'...', a.E'...', xE'...') the lexer decides.
    const start = open >= 2 ? sql.charCodeAt(open - 2) : 0x20;
    if (identifierChar(start) || start === 0x2e) return -1;
    const prefix = before | 0x20;
    if (prefix === 0x65) return quotedEnd(sql, open, true); // E'
    if (prefix === 0x62 || prefix === 0x78) return sql.indexOf("'", open + 1); // B' X'
    if (prefix !== 0x6e) return -1; // N' reads as '...'
  }
  let end = open;
  for (;;) {
    end = sql.indexOf("'", end + 1);
    if (end < 0) return -1;
    if (sql.charCodeAt(end + 1) !== 0x27) break;
    end++;
  }
  if (backslash < 0 || backslash > end) return end;
  return quotedEnd(sql, open, true) === end ? end : -1;
}

/** The same for a quoted identifier; -1 also when a scanned word is in it ("set_config"(...) is a call). */
function identifierEnd(sql: string, open: number, findWords: boolean): number {
  for (let i = open + 1; i < sql.length; i++) {
    const c = sql.charCodeAt(i);
    if (c === 0x22) {
      if (sql.charCodeAt(i + 1) !== 0x22) return i;
      i++;
    } else if (findWords && mayStartScannedWord(c) && scannedWordAt(sql, i)) return -1;
  }
  return -1;
}

/**
 * Where what a `$` at `at` opens ends, read as the lexer reads it: a $n parameter, or a whole
 * $tag$...$tag$ string. -1 when the lexer must decide: an unterminated string, a lone `$`, or a
 * `$` right after a letter, digit or `_` (inside a word it is part of the identifier; after a
 * number it opens a new token; telling them apart needs the lexer's tokens).
 */
function dollarEnd(sql: string, at: number): number {
  if (identifierChar(sql.charCodeAt(at - 1))) return -1;
  const parameter = parameterEnd(sql, at);
  if (parameter > at) return parameter;
  return dollarQuote(sql, at)?.end ?? -1;
}

/**
 * A text the loop of plainStatement reads to the same answer without stopping: a first word,
 * then no quote, `$`, backslash, parenthesis or `/` (a comment opened there may not close), and
 * no semicolon but one at the end. (A `--` comment always ends, and whatever it hides, the rest
 * is plain too.) Most simple Queries are so: pgbench's SELECT and UPDATEs, BEGIN, END,
 * `UPDATE t SET n = n + 1 WHERE id = 5`. One native match reads them, where the loop took a step
 * in JavaScript per character: about 150 against 220 ns for pgbench's SELECT.
 */
const UNREMARKABLE = /^[ \t\n\r\f\v]*[A-Za-z][^\\'"$();/]*(?:;[ \t\n\r\f\v]*)?$/;

/** An ASCII letter: what a first word starts with. */
function asciiLetter(c: number): boolean {
  return (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a;
}

/** A letter or `_`: what the rest of a first word is made of (anything else, a digit too, ends it). */
function headChar(c: number): boolean {
  return asciiLetter(c) || c === 0x5f;
}

/**
 * Most texts change nothing in the session, and saying so needs no tokens: one statement (a
 * trailing semicolon allowed) with balanced parentheses, no backslash outside literals, no
 * literal whose end depends on standard_conforming_strings, a first word that opens none of the
 * forms with effects, and none of the words the scan of every statement looks for outside
 * literals and comments. Literals ('...', E'...' and the other prefixes, $tag$...$tag$), quoted
 * identifiers ("...") and comments (-- and nested /* *\/) are skipped whole, so a multi-row
 * INSERT or a function body of megabytes is read once, without a token (the lexer took ~300 ms
 * and ~115 MB of garbage for 5 MB of VALUES); a scanned word inside a quoted identifier still
 * counts ("set_config"(...) is a call). What only the lexer reads right (an unterminated quote
 * or comment, a `$` it alone can place, anything after the semicolon) is declined. Those texts
 * get the answer the full analysis gives them; null means: analyze it.
 */
export function plainStatement(sql: string): StatementEffects | null {
  const findWords = ANY_SCANNED_WORD.test(sql);
  if (!findWords && UNREMARKABLE.test(sql)) {
    // What the loop below would conclude, without a step per character.
    let start = 0;
    while (SPACE[sql.charCodeAt(start)] === 1) start++;
    let end = start + 1;
    while (end < sql.length && headChar(sql.charCodeAt(end))) end++;
    return analyzedHead(sql, start, end) ? null : PLAIN_STATEMENT;
  }
  /** The next backslash from where a literal opens: -2 before the first literal, -1 when there is none. */
  let backslash = -2;
  let depth = 0;
  let headStart = -1;
  let headEnd = -1;
  for (let i = 0; i < sql.length; i++) {
    const c = sql.charCodeAt(i);
    if (c === 0x5c) return null; // a backslash outside quotes
    if ((c === 0x2d && sql.charCodeAt(i + 1) === 0x2d) || (c === 0x2f && sql.charCodeAt(i + 1) === 0x2a)) {
      // -- or /*: skipped like whitespace (before the first word too), and it ends that word.
      const end = commentEnd(sql, i);
      if (end < 0) return null;
      if (headStart >= 0 && headEnd < 0) headEnd = i;
      i = end - 1;
      continue;
    }
    if (c === 0x24) {
      // (The first word has ended here: a $ right after a letter or _ is declined by dollarEnd.)
      const end = headStart < 0 ? -1 : dollarEnd(sql, i);
      if (end < 0) return null;
      i = end - 1;
      continue;
    }
    if (c === 0x27 || c === 0x22) {
      if (headStart < 0) return null;
      if (headEnd < 0) headEnd = i;
      if (c === 0x27 && (backslash === -2 || (backslash >= 0 && backslash < i))) backslash = sql.indexOf('\\', i);
      i = c === 0x27 ? literalEnd(sql, i, backslash) : identifierEnd(sql, i, findWords);
      if (i < 0) return null;
      continue;
    }
    if (findWords && mayStartScannedWord(c) && scannedWordAt(sql, i)) return null;
    if (headEnd < 0) {
      if (headStart < 0 && asciiLetter(c)) headStart = i;
      else if (headStart < 0 && !(c < 128 && SPACE[c])) return null;
      else if (headStart >= 0 && !headChar(c)) headEnd = i;
    }
    if (c === 0x28) depth++;
    else if (c === 0x29 && --depth < 0) return null;
    else if (c === 0x3b) {
      for (let j = i + 1; j < sql.length; j++) {
        const d = sql.charCodeAt(j);
        if (!(d < 128 && SPACE[d])) return null;
      }
      break;
    }
  }
  if (depth !== 0 || headStart < 0) return null;
  return analyzedHead(sql, headStart, headEnd < 0 ? sql.length : headEnd) ? null : PLAIN_STATEMENT;
}

/**
 * The first words the full analysis must see (HANDLERS and NOT_EXECUTED_HEADS), by their first
 * letter: plainStatement compares a head with the few of its letter and length in place, where
 * slicing and lowercasing it to look it up cost a string and a hash on every simple Query.
 */
const ANALYZED_HEADS: string[][] = Array.from({ length: 26 }, () => []);
for (const head of [...Object.keys(HANDLERS), ...NOT_EXECUTED_HEADS]) ANALYZED_HEADS[head.charCodeAt(0) - 0x61]!.push(head);

/** Whether sql[start, end), a word of letters and `_` that starts with a letter, is one of ANALYZED_HEADS (any case). */
function analyzedHead(sql: string, start: number, end: number): boolean {
  const length = end - start;
  for (const head of ANALYZED_HEADS[(sql.charCodeAt(start) | 0x20) - 0x61]!) {
    if (head.length !== length) continue;
    let i = 1;
    // `_` | 0x20 is 0x7f, which no letter of a head is.
    while (i < length && (sql.charCodeAt(start + i) | 0x20) === head.charCodeAt(i)) i++;
    if (i === length) return true;
  }
  return false;
}

/**
 * How plainQueryBytes reads each byte: 0 goes on; UNPLAIN ends UNREMARKABLE's run (quote, `$`,
 * backslash, `/`, `;`) or is left to the text (controls, DEL, anything past ASCII); OPEN and
 * CLOSE are parentheses, counted as plainStatement counts them; DASH may open a `--` comment;
 * otherwise the byte may open the scanned word at that index of SCANNED_WORDS, plus one.
 */
const BYTE_CLASS = new Uint8Array(256);
const UNPLAIN = 255;
const OPEN = 254;
const CLOSE = 253;
const DASH = 252;
for (let c = 0; c < 256; c++) {
  if (c >= 0x7f || (c < 0x20 && SPACE[c] !== 1) || '\\\'"$;/'.includes(String.fromCharCode(c))) BYTE_CLASS[c] = UNPLAIN;
}
BYTE_CLASS[0x28] = OPEN;
BYTE_CLASS[0x29] = CLOSE;
BYTE_CLASS[0x2d] = DASH;
SCANNED_WORDS.forEach((word, index) => {
  BYTE_CLASS[word.charCodeAt(0)] = index + 1;
  BYTE_CLASS[word.charCodeAt(0) - 0x20] = index + 1;
});
/**
 * The second letter of the scanned word at each BYTE_CLASS index: checked before the word, as
 * most bytes that may open one (every s, a and t) are not followed by it.
 */
const SECOND_LETTER = Uint8Array.from([0, ...SCANNED_WORDS.map((word) => word.charCodeAt(1))]);

/**
 * Whether a simple Query's text, bytes[start, end) as it came (UTF-8), is one plainStatement
 * finds plain, read without making a string of it: ASCII only (so its text is its bytes), no
 * quote, `$`, backslash, `/` or scanned word, nothing but spaces after a semicolon, balanced
 * parentheses, and a first word that is neither an analyzed head nor one that opens the
 * ambassador's own statements (SET, RESET, SHOW; see ClientRouting.statementCommand). A `--`
 * comment is taken only in a text without parentheses (UNREMARKABLE's kind): plainStatement
 * skips comments when it counts parentheses, and this loop does not. Such a text is not decoded
 * unless something asks for it (query logging, splitting); most statements of applications
 * (an INSERT's VALUES (...), a call of now()) are such texts. False only means: decode it and
 * ask plainStatement.
 */
export function plainQueryBytes(bytes: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end && SPACE[bytes[i]!] === 1) i++;
  if (i >= end || !asciiLetter(bytes[i]!)) return false;
  const headStart = i;
  while (++i < end && headChar(bytes[i]!));
  if (headIn(bytes, headStart, i, ANALYZED_HEADS[(bytes[headStart]! | 0x20) - 0x61]!) || headIn(bytes, headStart, i, OWN_HEADS)) return false;
  let depth = 0;
  let parentheses = false;
  let comment = false;
  for (let j = headStart; j < end; j++) {
    const kind = BYTE_CLASS[bytes[j]!]!;
    if (kind === 0) continue;
    if (kind === OPEN) {
      depth++;
      parentheses = true;
    } else if (kind === CLOSE) {
      if (--depth < 0) return false;
    } else if (kind === DASH) {
      if (j + 1 < end && bytes[j + 1] === 0x2d) comment = true;
    } else if (kind !== UNPLAIN) {
      if (j + 1 < end && lowerAscii(bytes[j + 1]!) === SECOND_LETTER[kind] && wordAtBytes(bytes, j, end, SCANNED_WORDS[kind - 1]!)) return false;
    } else {
      if (bytes[j] !== 0x3b) return false;
      // A semicolon ends the text, but for spaces.
      for (let k = j + 1; k < end; k++) if (SPACE[bytes[k]!] !== 1) return false;
      break;
    }
  }
  return depth === 0 && !(parentheses && comment);
}

/** Whether the word bytes[start, end) is one of `heads` (small letters), in any case. */
function headIn(bytes: Uint8Array, start: number, end: number, heads: readonly string[]): boolean {
  for (const head of heads) {
    if (head.length === end - start && wordAtBytes(bytes, start, end, head)) return true;
  }
  return false;
}

/** First words of the ambassador's own statements (SET and RESET are analyzed heads too). */
const OWN_HEADS = ['set', 'reset', 'show'];

/** Whether `word` (small letters and `_`) starts at bytes[at], in any case, before `end`. */
function wordAtBytes(bytes: Uint8Array, at: number, end: number, word: string): boolean {
  if (end - at < word.length) return false;
  let i = 0;
  while (i < word.length && lowerAscii(bytes[at + i]!) === word.charCodeAt(i)) i++;
  return i === word.length;
}

/**
 * Results by exact text, about least recently used first out (classifier-cache.ts: no Map delete
 * per hit); results are frozen and shared. Plain statements (plainStatement) are answered
 * without the cache: their literals differ from one execution to the next, and caching them
 * would only push out the texts worth keeping.
 */
export class SessionEffectsCache {
  private readonly entries: TextCache<StatementEffects>;

  constructor(
    maxEntries = 5000,
    private readonly maxSqlLength = 64 * 1024,
  ) {
    this.entries = new TextCache(maxEntries, Math.max(1, maxEntries) * 1024);
  }

  get size(): number {
    return this.entries.size;
  }

  get(sql: string): StatementEffects {
    const plain = plainStatement(sql);
    if (plain !== null) return plain;
    const cached = this.entries.get(sql);
    if (cached !== undefined) return cached;
    const result = freeze(analyzeSessionEffects(sql));
    if (sql.length <= this.maxSqlLength) this.entries.set(sql, result);
    return result;
  }
}

function freeze(result: StatementEffects): StatementEffects {
  for (const effect of result.effects) Object.freeze(effect);
  Object.freeze(result.effects);
  return Object.freeze(result);
}

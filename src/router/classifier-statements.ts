// Judges one parsed statement (a libpg-query JSON AST node) as read or write (PURE: no I/O).
//
// Reads are decided by a generic walk over every node of the statement, not by matching SQL
// shapes: any LockingClause (FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE, at any depth), any
// nested INSERT/UPDATE/DELETE/MERGE (data-modifying CTEs), any SELECT ... INTO and any FuncCall
// whose function may write (see classifier-functions.ts) makes the statement a write.
// Invariant: a node type this module does not know is a write ('ddl' or 'utility').

import { judgeFunction, type FunctionPolicy } from './classifier-functions.ts';

export type RouteReason = string;

/**
 * What a transaction-control or transaction-characteristics statement does. 'begin' is BEGIN /
 * START TRANSACTION without a read mode (the session's default_transaction_read_only decides);
 * 'begin-read-write' and 'begin-read-only' name the mode the statement itself sets.
 */
export type TransactionEffect =
  | 'begin' | 'begin-read-only' | 'begin-read-write' | 'set-read-only' | 'set-read-write'
  | 'session-read-only' | 'session-read-write' | 'commit' | 'rollback' | 'savepoint' | 'release'
  | 'rollback-to' | 'prepare-transaction' | 'commit-prepared' | 'rollback-prepared' | 'follow';

/** query: data access; session: changes session state; cursor: DECLARE/FETCH/MOVE/CLOSE. */
export type StatementKind = 'query' | 'session' | 'transaction' | 'cursor' | 'directive' | 'utility';

export interface Directive {
  route?: 'primary' | 'replica' | 'auto';
  /** '0/0' when reset (no requirement). */
  minLsn?: string;
  /** ambassador.retry: whether a statement that failed on a lost server may run again elsewhere. */
  retry?: boolean;
}

export interface StatementVerdict {
  route: 'read' | 'write';
  reason: RouteReason;
  kind: StatementKind;
  transaction?: TransactionEffect;
  directive?: Directive;
}

type AstObject = Record<string, unknown>;

const CURSOR_OPT_HOLD = 0x20;
const DDL_NODE = /^(Create|Alter|Drop|Rename|Comment|Grant|Revoke|Truncate|Reassign|Define|Index|View|Rule|SecLabel|ImportForeign|RefreshMatView|Composite)/;
const LSN = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;
const FALSE_WORDS = new Set(['false', 'off', 'no', 'f', 'n', '0']);
const TRUE_WORDS = new Set(['true', 'on', 'yes', 't', 'y', '1']);

const TRANSACTION_KINDS: Record<string, TransactionEffect> = {
  TRANS_STMT_COMMIT: 'commit', TRANS_STMT_ROLLBACK: 'rollback', TRANS_STMT_SAVEPOINT: 'savepoint',
  TRANS_STMT_RELEASE: 'release', TRANS_STMT_ROLLBACK_TO: 'rollback-to',
  TRANS_STMT_PREPARE: 'prepare-transaction', TRANS_STMT_COMMIT_PREPARED: 'commit-prepared',
  TRANS_STMT_ROLLBACK_PREPARED: 'rollback-prepared',
};

const FIXED_WRITES: Record<string, [RouteReason, StatementKind]> = {
  InsertStmt: ['dml', 'query'], UpdateStmt: ['dml', 'query'], DeleteStmt: ['dml', 'query'],
  MergeStmt: ['dml', 'query'], ListenStmt: ['listen-notify', 'session'],
  UnlistenStmt: ['listen-notify', 'session'], NotifyStmt: ['listen-notify', 'query'],
  CallStmt: ['call', 'query'], DoStmt: ['do', 'query'], LockStmt: ['lock', 'query'],
  VacuumStmt: ['maintenance', 'utility'], ClusterStmt: ['maintenance', 'utility'],
  ReindexStmt: ['maintenance', 'utility'], CheckPointStmt: ['maintenance', 'utility'],
  ExecuteStmt: ['execute', 'query'], DiscardStmt: ['session-state', 'session'],
  DeallocateStmt: ['session-state', 'session'], CreateTableAsStmt: ['ddl', 'query'],
};

function isObject(value: unknown): value is AstObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function read(reason: RouteReason, kind: StatementKind = 'query'): StatementVerdict {
  return { route: 'read', reason, kind };
}

function write(reason: RouteReason, kind: StatementKind = 'query'): StatementVerdict {
  return { route: 'write', reason, kind };
}

/** The write reason a single typed node carries by itself, if any. */
function nodeWrite(type: string, body: unknown, policy: FunctionPolicy): RouteReason | undefined {
  switch (type) {
    case 'LockingClause': return 'locking-clause';
    case 'InsertStmt': case 'UpdateStmt': case 'DeleteStmt': case 'MergeStmt': return 'writing-cte';
    case 'SelectStmt': return isObject(body) && body['intoClause'] !== undefined ? 'select-into' : undefined;
    case 'FuncCall': return isObject(body) ? funcCallWrite(body, policy) : 'unknown-function:?';
    default: return undefined;
  }
}

function funcCallWrite(call: AstObject, policy: FunctionPolicy): RouteReason | undefined {
  const parts = Array.isArray(call['funcname']) ? call['funcname'].map(stringNode) : [];
  const name = parts[parts.length - 1];
  if (name === undefined || parts.some((part) => part === undefined)) return 'unknown-function:?';
  const schema = parts.length >= 2 ? parts[parts.length - 2] : undefined;
  const verdict = judgeFunction(policy, name, schema);
  return verdict.writes ? verdict.reason : undefined;
}

function stringNode(node: unknown): string | undefined {
  const inner = isObject(node) ? node['String'] : undefined;
  return isObject(inner) && typeof inner['sval'] === 'string' ? inner['sval'] : undefined;
}

/**
 * Depth-first walk of every node; returns the first reason the tree is a write. The walk keeps
 * its own stack: a 15 KB `select not not ... 1` is a tree thousands of levels deep, and a
 * recursive walk overflowed the call stack (a RangeError out of classify()).
 */
export function findWrite(value: unknown, policy: FunctionPolicy): RouteReason | undefined {
  // Each entry is a node to walk, or (with its key) a typed node to check before walking it.
  const stack: Array<{ key?: string; node: unknown }> = [{ node: value }];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const { key, node } = next;
    if (key !== undefined) {
      const reason = nodeWrite(key, node, policy);
      if (reason !== undefined) return reason;
    }
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) stack.push({ node: node[i] });
    } else if (isObject(node)) {
      const entries = Object.entries(node);
      for (let i = entries.length - 1; i >= 0; i--) stack.push({ key: entries[i]![0], node: entries[i]![1] });
    }
  }
  return undefined;
}

/** The scalar an A_Const / String / Integer / Boolean node holds (zero and false are omitted). */
function constValue(node: unknown): string | number | boolean | undefined {
  if (!isObject(node)) return undefined;
  const constant = isObject(node['A_Const']) ? node['A_Const'] : node;
  const text = constant['sval'] ?? constant['String'] ?? constant['fval'] ?? constant['Float'];
  if (isObject(text)) return String(text['sval'] ?? text['fval'] ?? '');
  const integer = constant['ival'] ?? constant['Integer'];
  if (isObject(integer)) return typeof integer['ival'] === 'number' ? integer['ival'] : 0;
  const flag = constant['boolval'] ?? constant['Boolean'];
  if (isObject(flag)) return flag['boolval'] === true;
  return undefined;
}

/** true / false for a recognised boolean setting, undefined otherwise. */
function booleanValue(node: unknown): boolean | undefined {
  const value = constValue(node);
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value !== 0;
  if (typeof value !== 'string') return undefined;
  const word = value.toLowerCase();
  return TRUE_WORDS.has(word) ? true : FALSE_WORDS.has(word) ? false : undefined;
}

function defElems(list: unknown): AstObject[] {
  if (!Array.isArray(list)) return [];
  return list.map((item) => (isObject(item) ? item['DefElem'] : undefined)).filter(isObject);
}

/** transaction_read_only among BEGIN / SET TRANSACTION options: true only if every mention is. */
function readOnlyOption(options: unknown): boolean | undefined {
  const mentions = defElems(options).filter((def) => def['defname'] === 'transaction_read_only');
  if (mentions.length === 0) return undefined;
  return mentions.every((def) => booleanValue(def['arg']) === true);
}

function judgeTransaction(body: AstObject): StatementVerdict {
  const kind = String(body['kind']);
  if (kind === 'TRANS_STMT_BEGIN' || kind === 'TRANS_STMT_START') {
    const readOnly = readOnlyOption(body['options']);
    if (readOnly === true) return { route: 'read', reason: 'transaction-control', kind: 'transaction', transaction: 'begin-read-only' };
    return { route: 'write', reason: 'transaction-control', kind: 'transaction', transaction: readOnly === undefined ? 'begin' : 'begin-read-write' };
  }
  return { route: 'write', reason: 'transaction-control', kind: 'transaction', transaction: TRANSACTION_KINDS[kind] ?? 'follow' };
}

function judgeExplain(body: AstObject, policy: FunctionPolicy): StatementVerdict {
  const analyze = defElems(body['options']).find((def) => def['defname'] === 'analyze');
  // EXPLAIN without ANALYZE only plans; with ANALYZE (unless explicitly false) it executes.
  if (analyze === undefined || (analyze['arg'] !== undefined && booleanValue(analyze['arg']) === false)) return read('explain');
  const inner = isObject(body['query']) ? judgeStatement(body['query'], policy) : write('utility');
  return inner.route === 'read' ? read('explain-analyze') : write('explain-analyze-write');
}

function judgeCopy(body: AstObject, policy: FunctionPolicy): StatementVerdict {
  if (body['is_from'] === true) return write('copy-from');
  if (body['filename'] !== undefined || body['is_program'] === true) return write('copy-to-file');
  if (!isObject(body['query'])) return read('copy-to');
  const inner = judgeStatement(body['query'], policy);
  return inner.route === 'read' ? read('copy-to') : write(inner.reason);
}

function judgeDeclare(body: AstObject, policy: FunctionPolicy): StatementVerdict {
  if ((Number(body['options']) & CURSOR_OPT_HOLD) !== 0) return write('cursor-with-hold', 'cursor');
  const inner = isObject(body['query']) ? judgeStatement(body['query'], policy) : write('utility');
  return inner.route === 'read' ? read('cursor-read', 'cursor') : write(inner.reason, 'cursor');
}

function judgePrepare(body: AstObject, policy: FunctionPolicy): StatementVerdict {
  // A prepared statement lives on one backend and EXECUTE cannot be classified: keep both on the primary.
  const inner = isObject(body['query']) ? judgeStatement(body['query'], policy) : write('utility');
  return write(inner.route === 'write' ? 'prepare-write' : 'prepare', 'session');
}

function directiveVerdict(directive: Directive): StatementVerdict {
  return { route: 'write', reason: 'directive', kind: 'directive', directive };
}

function judgeDirective(name: string, body: AstObject): StatementVerdict {
  const reset = body['kind'] === 'VAR_RESET' || body['kind'] === 'VAR_SET_DEFAULT';
  const args = Array.isArray(body['args']) ? body['args'] : [];
  const value = args.length === 1 ? constValue(args[0]) : undefined;
  const text = typeof value === 'string' ? value.toLowerCase() : undefined;
  if (name === 'ambassador.route') {
    if (reset) return directiveVerdict({ route: 'auto' });
    if (text === 'primary' || text === 'replica' || text === 'auto') return directiveVerdict({ route: text });
  }
  if (name === 'ambassador.min_lsn') {
    if (reset) return directiveVerdict({ minLsn: '0/0' });
    if (typeof value === 'string' && LSN.test(value)) return directiveVerdict({ minLsn: value.toUpperCase() });
  }
  if (name === 'ambassador.retry') {
    if (reset) return directiveVerdict({ retry: true });
    const on = args.length === 1 ? booleanValue(args[0]) : undefined;
    if (on !== undefined) return directiveVerdict({ retry: on });
  }
  return write('invalid-directive', 'session');
}

function readOnlySetting(body: AstObject): boolean {
  const args = Array.isArray(body['args']) ? body['args'] : [];
  return body['kind'] === 'VAR_SET_VALUE' && args.length === 1 && booleanValue(args[0]) === true;
}

function judgeSet(body: AstObject): StatementVerdict {
  const name = typeof body['name'] === 'string' ? body['name'] : '';
  if (name.startsWith('ambassador.')) return judgeDirective(name, body);
  if (name === 'TRANSACTION' || name === 'transaction_read_only') {
    const readOnly = name === 'TRANSACTION' ? readOnlyOption(body['args']) : readOnlySetting(body);
    if (readOnly === undefined) return { ...write('transaction-control', 'transaction'), transaction: 'follow' };
    return readOnly
      ? { route: 'read', reason: 'transaction-control', kind: 'transaction', transaction: 'set-read-only' }
      : { route: 'write', reason: 'transaction-control', kind: 'transaction', transaction: 'set-read-write' };
  }
  const session = write('session-state', 'session');
  if (name === 'SESSION CHARACTERISTICS') {
    const readOnly = readOnlyOption(body['args']);
    if (readOnly !== undefined) return { ...session, transaction: readOnly ? 'session-read-only' : 'session-read-write' };
  }
  if (name === 'default_transaction_read_only') {
    return { ...session, transaction: readOnlySetting(body) ? 'session-read-only' : 'session-read-write' };
  }
  return session;
}

/** Classifies one top-level statement node (`{ SelectStmt: {...} }` and so on). */
export function judgeStatement(stmt: AstObject, policy: FunctionPolicy): StatementVerdict {
  const [type, rawBody] = Object.entries(stmt)[0] ?? ['', undefined];
  const body = isObject(rawBody) ? rawBody : {};
  switch (type) {
    case 'SelectStmt': {
      const reason = findWrite(stmt, policy);
      return reason === undefined ? read('select') : write(reason);
    }
    case 'VariableShowStmt': return read('show');
    case 'ExplainStmt': return judgeExplain(body, policy);
    case 'CopyStmt': return judgeCopy(body, policy);
    case 'TransactionStmt': return judgeTransaction(body);
    case 'VariableSetStmt': return judgeSet(body);
    case 'DeclareCursorStmt': return judgeDeclare(body, policy);
    case 'FetchStmt': case 'ClosePortalStmt': return { ...write('cursor-follow', 'cursor'), transaction: 'follow' };
    case 'PrepareStmt': return judgePrepare(body, policy);
    default: {
      const fixed = FIXED_WRITES[type];
      if (fixed !== undefined) return write(fixed[0], fixed[1]);
      return write(DDL_NODE.test(type) ? 'ddl' : 'utility', 'utility');
    }
  }
}

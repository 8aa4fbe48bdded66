// One client's read/write routing in transaction mode: what each request needs (the primary or a
// replica), the client's routing settings (`ambassador.route`, target_session_attrs, a read-only
// session default) and its read-your-writes position. The forwarder asks; this file decides.
//
// Directives (`SET ambassador.route = ...`, `SET ambassador.min_lsn = '...'`,
// `SET ambassador.retry = off`, `RESET` of each) are answered here, as are `SHOW` of each: sent
// alone as a simple Query, or in an extended-protocol request made only of them (Parse, Bind,
// Describe, Execute, Close, Sync: how postgres.js sends every statement). Inside a longer text, or
// in a request that also runs something else (or with splitting off, when only ambassador.retry
// matters), they reach the server (which accepts them as placeholder settings; a bare `primary`
// in a simple query is quoted first, see StatementEffects.quoted) and take effect here when sent.
// They are not transactional: a ROLLBACK does not undo them. A DEALLOCATE of a statement the
// client prepared through the protocol, sent alone, is answered here the same way (its server
// statement is shared: request-builder.ts forgets the client's name).

import { Buffer } from 'node:buffer';
import {
  BIND_COMPLETE,
  CLOSE_COMPLETE,
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeReadyForQuery,
  encodeTextRowDescription,
  NO_DATA,
  NO_PARAMETERS,
  PARSE_COMPLETE,
  type TransactionStatus,
} from '../protocol/backend.ts';
import type { Classification, Classifier } from '../router/classifier.ts';
import type { Directive } from '../router/classifier-statements.ts';
import { readHints } from '../router/classifier-hints.ts';
import { decideRoute, shownDirective, type RouteDecision, type SessionRoute, type ShownDirective } from '../router/route-decision.ts';
import type { SessionEffect } from '../router/session-effects.ts';
import { formatLsn, parseLsn } from '../pool/host-choice.ts';
import type { RouteRequest, ServerRequest } from '../pool/server-pool.ts';
import { type MessageBytes, textsOf, UNDECODED, type LocalStep, type Request } from './request-builder.ts';

/** The per-database classifiers (health/function-catalogs.ts implements it). */
export interface ClassifierSource {
  classifierFor(request: ServerRequest): Classifier;
  /** Resolves when the database's function catalog has been read once. */
  ready(request: ServerRequest): Promise<void>;
  /** A client changed functions or extensions in `database`. */
  invalidate(database: string): void;
}

/** What every client's routing shares: the per-database classifiers and the mode. */
export interface RoutingContext {
  /** Null when read/write splitting is off. */
  catalogs: ClassifierSource | null;
  readYourWrites: 'off' | 'lsn';
}

/**
 * DEALLOCATE of a statement the client prepared through the protocol (request-builder.ts): on
 * servers it has a shared name, so what goes is the client's name, and no server runs it.
 * `restore`, set when it runs: puts the name back when a server runs it after all.
 */
export type DeallocateCommand = { kind: 'deallocate'; name: string; restore?: () => void };

/** A directive or a SHOW of one, or a DEALLOCATE, which the ambassador runs itself. */
export type DirectiveCommand = { kind: 'show'; name: ShownDirective } | { kind: 'set'; directive: Directive; tag: 'SET' | 'RESET' } | DeallocateCommand;

/** One statement the ambassador answers itself: it runs it, or refuses an invalid value. */
export type StatementCommand = DirectiveCommand | { kind: 'invalid'; sql: string };

/** A request the ambassador answers itself: one statement as a simple Query, or extended-protocol steps. */
export type LocalCommand = StatementCommand | { kind: 'steps'; steps: readonly LocalStep[] };

export interface ClientRoutingOptions {
  /** Null when read/write splitting is off: everything goes to the primary. */
  classifier: Classifier | null;
  readYourWrites: 'off' | 'lsn';
  route: SessionRoute;
  readOnlyDefault: boolean;
}

const WRITE_ROUTE: Readonly<RouteRequest> = Object.freeze({ kind: 'write' });
const READ_ROUTE: Readonly<RouteRequest> = Object.freeze({ kind: 'read' });
const WRITE_ALL: RouteDecision = { kind: 'write', reason: 'split-off' };
const UNKNOWN_TEXT: RouteDecision = { kind: 'write', reason: 'unknown-statement' };
const INVALID_PARAMETER_VALUE = '22023';
const DEALLOCATE_COMPLETE = encodeCommandComplete('DEALLOCATE');
const DIRECTIVE_NAMES = /^\s*(set|reset)\b[\s\S]*\bambassador\./i;
/** Only a text opening with a comment can carry a hint (checked without allocating). */
const LEADING_COMMENT = /^\s*(\/\*|--)/;

/**
 * LEADING_COMMENT.test(text), without running the expression for a text that opens with an
 * ASCII character past '/' (a letter, most texts): neither whitespace nor the start of a comment.
 */
function opensWithComment(text: string): boolean {
  const first = text.charCodeAt(0);
  return !(first > 0x2f && first < 0x80) && LEADING_COMMENT.test(text);
}

/** The value of a `SET ambassador.retry = ...` statement (see applyRetrySettings). */
const RETRY_VALUE = /(?:=|\bto\b)\s*'?([a-z0-9]+)'?\s*;?\s*$/i;

export class ClientRouting {
  route: SessionRoute;
  readOnlyDefault: boolean;
  /** The WAL position this client's reads must see (0n: none). */
  minLsn = 0n;
  /** ambassador.retry: a statement that failed on a lost server may run again elsewhere. */
  retry = true;

  constructor(private readonly options: ClientRoutingOptions) {
    this.route = options.route;
    this.readOnlyDefault = options.readOnlyDefault;
  }

  get splitting(): boolean {
    return this.options.classifier !== null;
  }

  /** Whether write transactions capture their commit position for read-your-writes. */
  get capturesWrites(): boolean {
    return this.options.readYourWrites === 'lsn' && this.splitting;
  }

  /** What a request needs; decided once per request. */
  decide(request: Request): RouteDecision {
    const classifier = this.options.classifier;
    if (classifier === null) return WRITE_ALL;
    if (request.route === null) {
      if (request.texts === UNDECODED) {
        // One plain Query: classified from its bytes, most often without making a string of it.
        const query = request.items[0] as MessageBytes;
        request.route = decideRoute([classifier.classifyAsciiQuery(query.chunk, query.start + 5, query.end - 1)], this);
      } else {
        const texts = textsOf(request);
        request.route = texts === null ? UNKNOWN_TEXT : decideRoute(texts.map((t) => classifier.classify(t)), this);
      }
    }
    return request.route;
  }

  /** Sends this request to the primary from now on (a replica refused it as read-only). */
  forceWrite(request: Request): void {
    request.route = { kind: 'write', reason: 'replica-refused' };
    for (const text of textsOf(request) ?? []) this.options.classifier?.learnWrite(text);
  }

  /** Where the pool must look for the request (shared objects: copy before changing one). */
  routeRequest(decision: RouteDecision): Readonly<RouteRequest> {
    if (decision.kind === 'write') return WRITE_ROUTE;
    return this.minLsn > 0n ? { kind: 'read', minLsn: this.minLsn } : READ_ROUTE;
  }

  /**
   * Whether a request that failed on a lost or demoted server may run again elsewhere: the
   * client did not turn retries off (`SET ambassador.retry = off`, or a leading
   * `/* ambassador:retry=off *\/` comment on a statement of the request).
   */
  mayRetry(request: Request): boolean {
    if (!this.retry) return false;
    // A plain Query opens with a letter: no comment.
    if (request.texts === UNDECODED) return true;
    for (const text of request.texts ?? []) if (opensWithComment(text) && readHints(text).retry === 'off') return false;
    return true;
  }

  /** A write transaction committed at `lsn` (read-your-writes). */
  noteCommit(lsn: bigint): void {
    if (lsn > this.minLsn) this.minLsn = lsn;
  }

  /** A ParameterStatus the server sent on this client's behalf. */
  noteParameter(name: string, value: string): void {
    if (name === 'default_transaction_read_only') this.readOnlyDefault = value === 'on';
  }

  /**
   * A request the ambassador answers: a simple Query that is only a directive or a SHOW of one,
   * or an extended-protocol request made only of them. Not in a failed transaction, which the
   * server refuses everything but its end in (25P02); nor, for an extended-protocol request, while
   * an exchange is open on the server (`exchangeOpen`: sent up to a Flush), whose Sync it is.
   */
  localCommand(request: Request, status: TransactionStatus, exchangeOpen = false): LocalCommand | null {
    if (status === 'E') return null;
    if (request.local !== null) return exchangeOpen ? null : { kind: 'steps', steps: request.local };
    const texts = request.texts;
    // A plain Query is none of the ambassador's own statements (plainQueryBytes).
    if (texts === null || texts === UNDECODED || texts.length !== 1 || request.items.length !== 1) return null;
    return this.statementCommand(texts[0]!);
  }

  /** The directive or SHOW of one that `sql` is, if it is one (and the ambassador answers it). */
  statementCommand(sql: string): StatementCommand | null {
    if (!mayBeDirective(sql)) return null;
    const shown = shownDirective(sql);
    if (shown !== null) return { kind: 'show', name: shown };
    if (!DIRECTIVE_NAMES.test(sql)) return null;
    const classification = this.classify(sql);
    if (classification?.reason === 'invalid-directive' && classification.statements === 1) return { kind: 'invalid', sql };
    if (classification?.kind !== 'directive' || classification.directive === undefined) return null;
    return { kind: 'set', directive: classification.directive, tag: /^\s*reset/i.test(sql) ? 'RESET' : 'SET' };
  }

  /** Applies a local command; returns the client's answer. */
  answer(command: LocalCommand, status: TransactionStatus): Buffer {
    if (command.kind === 'steps') return this.answerSteps(command.steps, status);
    if (command.kind === 'invalid') return Buffer.concat([invalidValue(), encodeReadyForQuery(status)]);
    const results = this.run(command);
    return Buffer.concat(command.kind === 'show' ? [describeShown(command), results, encodeReadyForQuery(status)] : [results, encodeReadyForQuery(status)]);
  }

  /** What a server would answer each message with (the statements run at Execute). */
  private answerSteps(steps: readonly LocalStep[], status: TransactionStatus): Buffer {
    const out: Buffer[] = [];
    let skipping = false;
    for (const step of steps) {
      if (step.kind === 'sync') {
        out.push(encodeReadyForQuery(status));
        skipping = false;
      }
      if (skipping) continue;
      switch (step.kind) {
        case 'parse':
          skipping = step.command.kind === 'invalid';
          out.push(skipping ? invalidValue() : PARSE_COMPLETE);
          break;
        case 'bind':
          out.push(BIND_COMPLETE);
          break;
        case 'close':
          out.push(CLOSE_COMPLETE);
          break;
        case 'describe':
          if (step.statement) out.push(NO_PARAMETERS);
          out.push(step.command.kind === 'show' ? describeShown(step.command) : NO_DATA);
          break;
        case 'execute':
          out.push(this.run(step.command));
          break;
      }
    }
    return Buffer.concat(out);
  }

  /** Runs a directive or SHOW: its DataRow (SHOW) and CommandComplete. */
  private run(command: DirectiveCommand): Buffer {
    // What it deallocates is forgotten already (request-builder.ts).
    if (command.kind === 'deallocate') return DEALLOCATE_COMPLETE;
    if (command.kind === 'set') {
      this.apply(command.directive);
      return encodeCommandComplete(command.tag);
    }
    const value = command.name === 'ambassador.route' ? this.route : command.name === 'ambassador.retry' ? (this.retry ? 'on' : 'off') : formatLsn(this.minLsn);
    return Buffer.concat([encodeDataRow([value]), encodeCommandComplete('SHOW')]);
  }

  /** Applies the directives among a forwarded request's texts (they also run on the server). */
  applyDirectives(request: Request): void {
    if (this.options.classifier === null) return this.applyRetrySettings(request.effects);
    for (const text of textsOf(request) ?? []) {
      if (!DIRECTIVE_NAMES.test(text)) continue;
      const directive = this.classify(text)?.directive;
      if (directive !== undefined) this.apply(directive);
    }
  }

  /**
   * Without the parser (splitting off) only ambassador.retry matters, and the session-effects
   * lexer already found the SET or RESET; its value is read off the statement.
   */
  private applyRetrySettings(effects: readonly SessionEffect[]): void {
    for (const effect of effects) {
      if (effect.kind === 'reset' && effect.name === 'ambassador.retry') this.retry = true;
      if (effect.kind !== 'set' || effect.name !== 'ambassador.retry') continue;
      const value = RETRY_VALUE.exec(effect.statement)?.[1]?.toLowerCase();
      if (value === 'off' || value === 'false' || value === '0' || value === 'no') this.retry = false;
      else if (value === 'on' || value === 'true' || value === '1' || value === 'yes') this.retry = true;
    }
  }

  private classify(sql: string): Readonly<Classification> | null {
    return this.options.classifier?.classify(sql) ?? null;
  }

  private apply(directive: Directive): void {
    if (directive.route !== undefined) this.route = directive.route;
    if (directive.retry !== undefined) this.retry = directive.retry;
    if (directive.minLsn !== undefined) {
      // A token from elsewhere adds to what this client has written; '0/0' (RESET) clears.
      const lsn = parseLsn(directive.minLsn);
      this.minLsn = lsn === 0n ? 0n : lsn > this.minLsn ? lsn : this.minLsn;
    }
  }
}

/**
 * Whether `sql` opens with the first word of a directive or a SHOW (SET, RESET, SHOW, any case),
 * as SHOW_DIRECTIVE and DIRECTIVE_NAMES require: read in place, where the two regexes cost every
 * simple Query and every Parse two matches. A non-ASCII character before the first word may be a
 * space to `\s`: the regexes decide then.
 */
export function mayBeDirective(sql: string): boolean {
  let i = 0;
  let c = sql.charCodeAt(0);
  while (c === 0x20 || (c >= 0x09 && c <= 0x0d)) c = sql.charCodeAt(++i);
  if (c > 0x7f) return true;
  const start = i;
  while ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) c = sql.charCodeAt(++i);
  switch (i - start) {
    case 3:
      return wordAt(sql, start, 'set');
    case 4:
      return wordAt(sql, start, 'show');
    case 5:
      return wordAt(sql, start, 'reset');
    default:
      return false;
  }
}

/** Whether the letters at sql[start] spell `word` (lower case), in any case. */
function wordAt(sql: string, start: number, word: string): boolean {
  for (let i = 0; i < word.length; i++) if ((sql.charCodeAt(start + i) | 0x20) !== word.charCodeAt(i)) return false;
  return true;
}

function describeShown(command: { name: ShownDirective }): Buffer {
  return encodeTextRowDescription([command.name]);
}

function invalidValue(): Buffer {
  return encodeErrorResponse({
    severity: 'ERROR',
    code: INVALID_PARAMETER_VALUE,
    message: 'invalid value for an ambassador setting',
    hint: "ambassador.route takes primary, replica or auto; ambassador.min_lsn takes a WAL position such as '0/16B3748'.",
  });
}

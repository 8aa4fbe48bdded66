// Client side of transaction pooling: whole client messages are assembled into requests (up
// to Sync, Flush, Query, FunctionCall or a COPY message), with named statements mapped to
// their shared server names and the session effects of what each request runs collected.
// Nothing here touches a socket or a server: binding a request to a server is the forwarder's.

import { Buffer } from 'node:buffer';
import { encodeErrorResponse } from '../protocol/backend.ts';
import { type BindLayout, decodeBindNames, decodeParse, decodeTarget, encodeQuery, encodeTarget, FrontendType, NameCache, nulIndex } from '../protocol/frontend.ts';
import { frameMessage } from '../protocol/writer.ts';
import { sameBytes } from '../lib/bytes.ts';
import type { RouteDecision } from '../router/route-decision.ts';
import type { DeallocateCommand, DirectiveCommand, StatementCommand } from './client-routing.ts';
import { plainQueryBytes, type SessionEffect, type SessionEffectsCache, type StatementEffects } from '../router/session-effects.ts';
import type { DropEntry, PlanEntry, StatementDrop } from './response-plan.ts';
import { clientStatement, CLOSED_STATEMENT, type ClientStatement, isServerStatementName, MISSING_STATEMENT, MISSING_STATEMENT_BYTES, REFUSED_PARSE } from './statements.ts';

/**
 * Where a whole message (header included) lies: `chunk[start, end)`, the client's chunk it came
 * in (nothing copied, and no view made of it on the way: a request whose messages lie side by
 * side goes out as one range of that chunk), or a buffer of its own.
 */
export interface MessageBytes {
  chunk: Buffer;
  start: number;
  end: number;
}

/** One message of a pending request, before it is bound to a server. */
export type Item =
  | ({ kind: 'raw'; type: number; entry: PlanEntry | null } & MessageBytes)
  /** `unnamed`: the client's unnamed statement, shared under pool.cacheUnnamedStatements. */
  | { kind: 'parse'; statement: ClientStatement; unnamed: boolean }
  /**
   * A Bind of the client's unnamed statement goes as it came (serverName null), behind its Parse
   * (`unnamedParse`) when that went in an earlier exchange, maybe to another server. One of a
   * statement the client prepared is renamed (`rename`: the server name's bytes, at the offsets
   * of BindLayout; `source`: the statement, re-created from it on a server that lacks it). One of
   * a name the ambassador does not know goes as it came too (rename and source null), unless the
   * client cannot have prepared it (MISSING_STATEMENT: renamed, source null). `exchangeParse`:
   * the unnamed statement's Parse when it went earlier in the same exchange (no Sync since), for
   * running the request again alone on another lease (standAlone). `relies`: of a named
   * statement the client prepared, with no Describe of its portal behind it in the request: the
   * client reads its rows by the description it has of the statement (result-shapes.ts).
   */
  | ({ kind: 'bind'; serverName: string | null; rename: Buffer | null; source: ClientStatement | null; unnamedParse: Buffer | null; exchangeParse: Buffer | null; relies: boolean } & MessageBytes & BindLayout)
  /** Of a statement: `source`, `unnamedParse` and `exchangeParse` as for a Bind. */
  | { kind: 'describe'; serverName: string; source: ClientStatement | null; unnamedParse: Buffer | null; exchangeParse: Buffer | null };

/**
 * What the ambassador answers for one message of an extended-protocol request made only of its
 * own directives and SHOWs of them (postgres.js sends every statement so): such a request never
 * reaches a server (client-routing.ts answers it). A Parse of an invalid directive is refused,
 * and what follows it up to Sync is skipped, as a server skips after an error.
 */
export type LocalStep =
  | { kind: 'parse'; command: StatementCommand }
  | { kind: 'describe'; command: DirectiveCommand; statement: boolean }
  | { kind: 'execute'; command: DirectiveCommand }
  | { kind: 'bind' | 'close' | 'sync' };

export interface Request {
  items: Item[];
  /** Session effects of what the request runs (Query text, or the statements its Executes run). */
  effects: SessionEffect[];
  /** Ends in Sync, Query or FunctionCall: a ReadyForQuery will answer it. */
  completes: boolean;
  /**
   * Eligible for the cached-plan retry: the first message is a Bind of a named statement (in a
   * request that describes its portal again), or a Parse of a shared unnamed statement.
   */
  retryable: boolean;
  /**
   * The SQL texts the request runs or prepares (Query texts, Parse texts, the statements of its Executes), for
   * routing; null when something it runs cannot be known (a FunctionCall, an Execute of a portal
   * bound elsewhere), which routes it to the primary. UNDECODED for a lone simple Query of a
   * plain text (plainQueryBytes), read from its bytes only when asked for: see textsOf.
   */
  texts: string[] | null | typeof UNDECODED;
  /** Where it goes, once decided (client-routing.ts). */
  route: RouteDecision | null;
  /** Hosts ("host:port") not to run it on: it failed there and runs again elsewhere. */
  avoid: string[] | null;
  /** It already ran once more after its server was lost (a request is retried at most once). */
  retried: boolean;
  /** What it counts for the client-side queue limit (its messages' sizes; 64 for a renamed Parse or Describe). */
  bytes: number;
  /** Set when the ambassador can answer the whole request itself (see LocalStep and ClientRouting.localCommand). */
  local: readonly LocalStep[] | null;
}

/**
 * The texts of a request that is one simple Query whose text is plain (plainQueryBytes): not a
 * directive, no leading comment, no session effect. That is all most requests are asked about
 * (the text itself is wanted for splitting and query logging only), and making a string of a
 * Buffer's bytes costs some 0.3 µs on the hot path: textsOf makes it when asked.
 */
export const UNDECODED: unique symbol = Symbol('undecoded Query text');

/** A request's SQL texts (Request.texts), the text of a plain Query decoded now if not yet. */
export function textsOf(request: Request): string[] | null {
  const texts = request.texts;
  if (texts !== UNDECODED) return texts;
  // The Query is the request's only message (UNDECODED is set only then), as it came: a plain
  // text is never replaced (replaceMessage), and a request is copied with other items only when
  // it starts with a Bind or Parse (retriedOnce).
  const query = request.items[0] as MessageBytes;
  const decoded = [query.chunk.toString('utf8', query.start + 5, query.end - 1)];
  request.texts = decoded;
  return decoded;
}

/**
 * Whether a request parses, binds or describes a statement shared on servers (named ones, and
 * unnamed ones under pool.cacheUnnamedStatements): what it sends depends on what its server
 * holds. A simple Query, or an unnamed statement going as it came, does not.
 */
export function usesServerStatements(request: Request): boolean {
  for (const item of request.items) {
    if (item.kind === 'parse' || (item.kind !== 'raw' && item.serverName !== null)) return true;
  }
  return false;
}

/**
 * Makes a request ready to run again alone on another lease, after the exchange it was sent in
 * was left open (no Sync) on a lease it no longer has: a read a replica refused, or one whose
 * server was lost. A Bind or Describe of the unnamed statement parsed earlier in that exchange
 * gets its Parse in front (unnamedParse), as for one parsed in an earlier exchange; otherwise the
 * new server would bind whatever unnamed statement it holds (another client's). False when the
 * request runs a portal bound before it in that exchange: no other server has it. A rare path.
 */
export function standAlone(request: Request): boolean {
  const bound = new Set<string>();
  let parsesUnnamed = false;
  for (const item of request.items) {
    if (item.kind === 'bind') {
      bound.add(item.chunk.toString('latin1', item.start + 5, item.portalEnd));
    } else if (item.kind === 'raw') {
      const { chunk, start, end, type } = item;
      if (type === FrontendType.Parse && chunk[start + 5] === 0) parsesUnnamed = true;
      const portalAt = type === FrontendType.Execute ? start + 5 : type === FrontendType.Describe && chunk[start + 5] === 0x50 ? start + 6 : -1;
      if (portalAt >= 0 && !bound.has(chunk.toString('latin1', portalAt, Math.max(portalAt, nulIndex(chunk, portalAt, end))))) return false;
    }
  }
  for (const item of request.items) {
    if ((item.kind === 'bind' || item.kind === 'describe') && item.exchangeParse !== null && !parsesUnnamed) {
      item.unnamedParse = item.exchangeParse;
      item.exchangeParse = null;
    }
  }
  return true;
}

/** The current request before its first message (never added to: addItem and pushRaw replace it). */
const NO_ITEMS: Item[] = [];

/** A request's texts before its first (never added to: addText replaces it); frozen, as requests share it. */
const NO_TEXTS = Object.freeze([]) as unknown as string[];

/** Plan entries that carry no state of their own are shared by every request. */
const QUERY: PlanEntry = Object.freeze({ kind: 'query' });
const SYNC: PlanEntry = Object.freeze({ kind: 'sync' });
const EXECUTE: PlanEntry = Object.freeze({ kind: 'execute' });
const CLOSE: PlanEntry = Object.freeze({ kind: 'close' });
const DESCRIBE_PORTAL: PlanEntry = Object.freeze({ kind: 'describe-portal' });
const UNNAMED_PARSE: PlanEntry = Object.freeze({ kind: 'parse' });
const DUPLICATE_PREPARED_STATEMENT = '42P05';
const NO_EFFECTS: SessionEffect[] = Object.freeze([]) as unknown as SessionEffect[];
const EMPTY = Buffer.alloc(0);
/** A Close of a statement no server has: CloseComplete, nothing closed (CLOSED_STATEMENT). */
const CLOSE_CLOSED_STATEMENT = encodeTarget(FrontendType.Close, 'S', CLOSED_STATEMENT);
const ITEM_BYTES_RENAMED = 64;
const BIND_STEP: LocalStep = Object.freeze({ kind: 'bind' });
const CLOSE_STEP: LocalStep = Object.freeze({ kind: 'close' });
const SYNC_STEP: LocalStep = Object.freeze({ kind: 'sync' });
const NOTHING_LOCAL = (): null => null;
/** A retained unnamed Parse is copied out of a client chunk larger than this (the chunk would stay alive with it). */
const RETAIN_WHOLE_CHUNK = 4096;

export interface RequestBuilderOptions {
  /**
   * pool.cacheUnnamedStatements: the unnamed statement is shared like a named one (named on
   * servers by what it is), so a text parsed again is not parsed again on a server that holds it.
   */
  cacheUnnamed?: boolean;
}

/** A statement the client prepared: what it runs, and, when named, the shared server statement. */
interface Prepared {
  text: string;
  effects: readonly SessionEffect[];
  /** null for the unnamed statement (it goes as it came), unless pool.cacheUnnamedStatements shares it. */
  shared: ClientStatement | null;
  /** A directive or SHOW of one: the ambassador answers what runs it. */
  local: DirectiveCommand | null;
}

export class RequestBuilder {
  /**
   * The client's statements by name ('' unnamed), and the statement each portal was bound to: a
   * Bind costs one lookup and one store, an Execute one lookup.
   */
  private readonly statements = new Map<string, Prepared>();
  private readonly portals = new Map<string, Prepared>();
  /** Statement names read from Binds (allocated by the first Bind: a client that sends none keeps none). */
  private names: NameCache | null = null;
  private readonly cacheUnnamed: boolean;
  private unnamedParse: Buffer | null = null;
  /**
   * The text read from `unnamedParse` (null when it could not be read). Drivers send the same
   * unnamed Parse for every execution of a text (pgbench -M extended, pg without a statement
   * name): a Parse whose bytes repeat it is not decoded or classified again, and the same string
   * goes on (the caches keyed by text find it by its kept hash).
   */
  private unnamedText: string | null = null;
  /** What `unnamedText` is when it is the ambassador's own (a directive, or one it refuses). */
  private unnamedCommand: StatementCommand | null = null;
  /** The unnamed statement `unnamedParse` made, when shared (pool.cacheUnnamedStatements). */
  private unnamedShared: Prepared | null = null;
  /**
   * An unnamed Parse was sent since the last Sync: the exchange that holds it is still open on
   * the lease (an unsynced exchange keeps its lease), so a Bind of it needs no replay.
   */
  private unnamedInExchange = false;
  /**
   * Names a DEALLOCATE ALL or DISCARD ALL forgot in an exchange the client has ended, kept until
   * the forwarder knows every drop answered (dropsAnswered): refused, a drop leaves the client
   * its names, so a message that names one of them waits for the answer (add: 'wait').
   */
  private forgottenByDrops: Set<string> | null = null;
  /**
   * Those a drop forgot in the exchange still open: nothing behind it there waits, since a server
   * that refuses it skips the rest of the exchange.
   */
  private forgottenInExchange: string[] | null = null;
  /** NO_ITEMS until the request's first message. */
  private current: Item[] = NO_ITEMS;
  /** The message add() is taking, as MessageBytes has it, and its payload when the caller had one. */
  private chunk: Buffer = EMPTY;
  private start = 0;
  private end = 0;
  private body: Buffer | null = null;
  // The message being added, decoded: made once, so reading a message allocates no closure.
  private readonly readParse = () => decodeParse(this.payload());
  private readonly readBindNames = () => decodeBindNames(this.chunk, (this.names ??= new NameCache()), this.start + 5, this.end);
  private readonly readTarget = () => decodeTarget(this.chunk, this.start + 5, this.end);
  private currentEffects: SessionEffect[] = [];
  /** NO_TEXTS until the first text (see addText); null once one cannot be known. */
  private currentTexts: string[] | null = NO_TEXTS;
  private currentBytes = 0;
  /** Every message of the current request so far is one the ambassador answers (see LocalStep). */
  private currentLocal = true;
  /** Their answers (allocated by the first). */
  private currentSteps: LocalStep[] | null = null;
  /**
   * Set once a Parse of the current request is refused (an invalid directive value): what
   * follows is skipped up to Sync, as a server skips after an error. Answered here, the request
   * must leave the statements as if nothing after the refusal had run, so what it changes is
   * noted here and put back; sent to a server (it ended without Sync), it keeps them.
   */
  private undo: Array<() => void> | null = null;
  /** The undo is for a Parse the server refuses (refuseParse): the server skips the rest, so it is put back in any case. */
  private skippedOnServer = false;

  /** `localOf`: the ambassador's own statement a text is, if it is one (ClientRouting.statementCommand). */
  constructor(
    private readonly effects: SessionEffectsCache,
    private readonly localOf: (sql: string) => StatementCommand | null = NOTHING_LOCAL,
    options: RequestBuilderOptions = {},
  ) {
    this.cacheUnnamed = options.cacheUnnamed === true;
  }

  /** Whether a request is partly assembled (messages received, no Sync yet). */
  get pending(): boolean {
    return this.current.length > 0;
  }

  /** Names a drop forgot are kept (forgottenByDrops): dropsAnswered once every drop is answered. */
  get forgetting(): boolean {
    return this.forgottenByDrops !== null;
  }

  /** Every DEALLOCATE ALL and DISCARD ALL read so far has been answered: the names they forgot are gone, or back. */
  dropsAnswered(): void {
    this.forgottenByDrops = null;
  }

  /**
   * Whether the message (a Parse, a Bind, a Describe or Close of a statement, or a Query that
   * DEALLOCATEs one) names a statement the client does not hold that a drop forgot. Were the drop
   * refused, Postgres would still hold it: a Bind would run it (after the failed block's
   * ROLLBACK), a Parse of the name be refused with 42P05, a Close or DEALLOCATE drop it.
   */
  private namesForgotten(type: number): boolean {
    let name: string | null = null;
    if (type === FrontendType.Query) {
      const from = this.start + 5;
      const to = Math.max(from, this.end - 1);
      if (!plainQueryBytes(this.chunk, from, to)) {
        const analysis = this.effects.get(this.chunk.toString('utf8', from, to));
        name = deallocatedBy(analysis.quoted === undefined ? analysis : this.effects.get(analysis.quoted));
      }
    } else if (type === FrontendType.Parse) {
      name = readable(this.readParse)?.name ?? null;
    } else if (type === FrontendType.Bind) {
      name = readable(this.readBindNames)?.statement ?? null;
    } else if (type === FrontendType.Describe || type === FrontendType.Close) {
      const target = readable(this.readTarget);
      if (target?.kind === 'S') name = target.name;
    }
    return name !== null && name !== '' && !this.statements.has(name) && this.forgottenByDrops!.has(name);
  }

  /**
   * Takes one whole client message: its payload, and where the whole message (header included)
   * lies when the caller has it in one piece (`chunk[start, end)`; framed from the payload
   * otherwise). With the chunk, the payload may be null: the messages of every request (Query,
   * Bind, Describe, Execute, Sync, a Parse repeated) are read where they lie, and no view of them
   * is made. Returns a finished request when this message completes one, 'terminate' for
   * Terminate, null while a request is still being assembled, or 'wait' when the message names
   * a statement that a drop may not have dropped (forgottenByDrops): nothing of it was taken,
   * and it comes again once every drop is answered (dropsAnswered).
   */
  add(type: number, body: Buffer | null, chunk: Buffer | null = null, start = 0, end = 0): Request | 'terminate' | 'wait' | null {
    if (chunk === null) {
      if (body === null) throw new TypeError('a message needs its payload or its chunk');
      chunk = frameMessage(type, body);
      start = 0;
      end = chunk.length;
    }
    this.chunk = chunk;
    this.start = start;
    this.end = end;
    this.body = body;
    if (this.forgottenByDrops !== null && this.namesForgotten(type)) return 'wait';
    switch (type) {
      case FrontendType.Parse:
        return this.onParse();
      case FrontendType.Bind:
        return this.onBind();
      case FrontendType.Describe:
      case FrontendType.Close:
        return this.onTarget(type);
      case FrontendType.Query: {
        this.notLocal(); // a lone directive is ClientRouting.localCommand's
        // A simple Query drops the unnamed statement in Postgres: a Bind of it fails after one.
        if (this.unnamedParse !== null) this.dropUnnamed();
        // The text, without its NUL (a Query without one is the server's to refuse).
        const from = start + 5;
        const to = Math.max(from, end - 1);
        // Alone in its request and plain: no effects, nothing to decode now.
        if (this.current.length === 0 && plainQueryBytes(chunk, from, to)) return this.endRequest(type, QUERY, true, UNDECODED);
        let sql = chunk.toString('utf8', from, to);
        let analysis = this.effects.get(sql);
        if (analysis.quoted !== undefined) {
          // What the server (and the parser behind routing) can read: see StatementEffects.quoted.
          sql = analysis.quoted;
          analysis = this.effects.get(sql);
          this.replaceMessage(encodeQuery(sql));
        }
        this.addEffects(analysis.effects);
        this.addText(sql);
        return analysis.effects.length === 0 ? this.endRequest(type, QUERY, true) : this.endQueryWithEffects(type, analysis);
      }
      case FrontendType.FunctionCall:
        this.notLocal();
        this.currentTexts = null;
        return this.endRequest(type, QUERY, true);
      case FrontendType.Sync:
        this.local(SYNC_STEP);
        return this.endRequest(type, SYNC, true);
      case FrontendType.Flush:
        this.notLocal();
        return this.endRequest(type, null, false);
      case FrontendType.Execute: {
        const from = start + 5;
        const portal = from === end || chunk[from] === 0 ? '' : chunk.toString('utf8', from, Math.max(from, nulIndex(chunk, from, end)));
        const bound = this.portals.get(portal);
        let entry = EXECUTE;
        if (bound === undefined) this.currentTexts = null;
        else {
          if (bound.effects.length > 0) entry = this.executeEffects(bound.effects);
          this.addText(bound.text);
        }
        if (bound?.local) this.executeStep(bound.local);
        else this.notLocal();
        this.pushRaw(type, entry);
        return null;
      }
      case FrontendType.CopyData:
      case FrontendType.CopyDone:
      case FrontendType.CopyFail:
        // Part of a COPY already under way on the lease: sent as soon as its turn comes.
        this.notLocal();
        return this.endRequest(type, null, false);
      case FrontendType.Terminate:
        return 'terminate';
      default:
        this.notLocal();
        this.pushRaw(type, null);
        return null;
    }
  }

  /** The current request has a message the ambassador answers itself. */
  private local(step: LocalStep): void {
    if (this.currentLocal) (this.currentSteps ??= []).push(step);
  }

  /** The current request has a message for a server (unless it is skipped after a refused Parse). */
  private notLocal(): void {
    if (this.undo === null) this.currentLocal = false;
  }

  /** The Parse of the ambassador's own statement `command`, if it is one (named `name`). */
  private parseStep(command: StatementCommand | null, name: string): void {
    if (command === null) return this.notLocal();
    if (command.kind === 'invalid' && this.currentLocal && this.undo === null) {
      // Refused: the statement is not created (onParse notes its entry as it changes it), and
      // the unnamed one is gone, as in Postgres.
      this.undo = name === '' ? [() => this.forgetUnnamed()] : [];
    }
    this.local({ kind: 'parse', command });
  }

  /**
   * Notes a text the request runs or prepares. Arrays of one or two are made as literals, sized
   * to fit: the first push onto an empty array reserves 17 slots, and a request has one text (a
   * simple Query, a Bind of a prepared statement) or two (Parse and Execute of the same text).
   */
  private addText(text: string): void {
    const texts = this.currentTexts;
    if (texts === null) return;
    if (texts === NO_TEXTS) this.currentTexts = [text];
    else if (texts.length === 1) this.currentTexts = [texts[0]!, text];
    else texts.push(text);
  }

  /** Before `map` changes at `key`: noted while a refused Parse's request is assembled (see undo). */
  private changing(map: Map<string, Prepared>, key: string): void {
    // The closure is made apart: a function whose variables a closure captures allocates their
    // context on every call, even one that returns before making the closure.
    if (this.undo !== null) this.undo.push(restoring(map, key));
  }

  /** Before the unnamed statement changes: noted while a refused Parse's request is assembled. */
  private changingUnnamed(): void {
    if (this.undo !== null) this.undo.push(this.restoringUnnamed());
  }

  private restoringUnnamed(): () => void {
    const { unnamedParse, unnamedText, unnamedCommand, unnamedShared } = this;
    return () => {
      this.unnamedParse = unnamedParse;
      this.unnamedText = unnamedText;
      this.unnamedCommand = unnamedCommand;
      this.unnamedShared = unnamedShared;
    };
  }

  /** The unnamed statement is gone (closed, or dropped by a Query): noted for undo, then forgotten. */
  private dropUnnamed(): void {
    this.changing(this.statements, '');
    this.changingUnnamed();
    this.forgetUnnamed();
  }

  private forgetUnnamed(): void {
    this.statements.delete('');
    this.unnamedParse = null;
    this.unnamedText = null;
    this.unnamedCommand = null;
    this.unnamedShared = null;
  }

  /** The payload of the message being added: the caller's, or a view of its chunk made now. */
  private payload(): Buffer {
    return (this.body ??= this.chunk.subarray(this.start + 5, this.end));
  }

  /** Adds a message to the current request (not its last: see pushRaw). */
  private addItem(item: Item): void {
    if (this.current === NO_ITEMS) this.current = [];
    this.current.push(item);
  }

  /**
   * Adds the message being read, to go on as it is. The message that ends a request (`last`) with
   * nothing before it (a simple Query: most requests) makes an array literal of one slot, where
   * the first push onto an empty array reserves 17.
   */
  private pushRaw(type: number, entry: PlanEntry | null, last = false): void {
    const { chunk, start, end } = this;
    const item: Item = { kind: 'raw', type, chunk, start, end, entry };
    if (last && this.current === NO_ITEMS) this.current = [item];
    else this.addItem(item);
    this.currentBytes += end - start;
  }

  /** What goes on for the message being added is `message` instead. */
  private replaceMessage(message: Buffer): void {
    this.chunk = message;
    this.start = 0;
    this.end = message.length;
  }

  private onParse(): null {
    if (this.repeatsUnnamedParse()) {
      // The same bytes: the kept Parse stays the one to replay (no slice of this chunk is held),
      // and its text and effects are noted under '' already (only an unnamed Parse writes there).
      this.addText(this.unnamedText!);
      this.parseStep(this.unnamedCommand, '');
      const shared = this.unnamedShared;
      // Not decoded, hashed or copied again (still the client's unnamed statement: a Close of it,
      // or anything else that replaces it, clears unnamedShared with it).
      if (shared !== null) return this.pushParse(shared.shared!, true);
      this.unnamedInExchange = true;
      this.pushRaw(FrontendType.Parse, UNNAMED_PARSE);
      return null;
    }
    const payload = this.payload();
    const parse = readable(this.readParse);
    if (parse === null) return this.unreadable(FrontendType.Parse);
    // A name the client holds: Postgres refuses the Parse, and the name keeps its statement.
    if (parse.name !== '' && this.statements.has(parse.name)) return this.refuseParse(parse.name);
    const analysis = this.effects.get(parse.query);
    const effects = analysis.effects;
    // Parsed here, executed maybe later (postgres.js parses and describes before binding): the
    // request goes where the statement will run.
    this.addText(parse.query);
    // Declared parameter types: not one the ambassador answers (a directive takes none).
    const command = parse.paramTypes.readUInt16BE(0) === 0 ? (this.localOf(parse.query) ?? deallocateCommand(analysis)) : null;
    // An invalid value is refused when the request is answered here (parseStep). In a request
    // that goes to a server (something else in it), the server takes it as a placeholder
    // setting, as it takes any directive there: recorded like any statement.
    this.parseStep(command, parse.name);
    const local = command?.kind === 'invalid' ? null : command;
    if (parse.name === '') {
      const message = this.chunk.subarray(this.start, this.end);
      this.changingUnnamed();
      this.changing(this.statements, '');
      this.unnamedParse = message.buffer.byteLength > RETAIN_WHOLE_CHUNK ? Buffer.from(message) : message;
      this.unnamedText = parse.query;
      this.unnamedCommand = command;
      if (this.cacheUnnamed && command === null) {
        const statement = clientStatement(parse, payload);
        const shared: Prepared = { text: parse.query, effects, shared: statement, local: null };
        this.unnamedShared = shared;
        this.statements.set('', shared);
        return this.pushParse(statement, true);
      }
      // The ambassador's own statements stay unnamed (answered here, or placeholders on a server).
      this.unnamedShared = null;
      this.unnamedInExchange = true;
      this.statements.set('', { text: parse.query, effects, shared: null, local });
      this.pushRaw(FrontendType.Parse, UNNAMED_PARSE);
      return null;
    }
    const statement = clientStatement(parse, payload);
    this.changing(this.statements, parse.name);
    this.statements.set(parse.name, { text: parse.query, effects, shared: statement, local });
    return this.pushParse(statement, false);
  }

  /**
   * A Parse of a name the client holds: Postgres refuses it (42P05) and skips what follows up to
   * Sync. It goes on as a Parse every server refuses (REFUSED_PARSE), so that the server fails at
   * that place, skips the same messages and aborts the transaction as Postgres would; the client
   * gets Postgres's error in place of the server's (the plan entry's refusal).
   */
  private refuseParse(name: string): null {
    this.notLocal();
    // What follows up to the end of the request is skipped on the server: it changes nothing.
    if (this.undo === null) {
      this.undo = [];
      this.skippedOnServer = true;
    }
    this.replaceMessage(REFUSED_PARSE);
    const refusal = encodeErrorResponse({ severity: 'ERROR', code: DUPLICATE_PREPARED_STATEMENT, message: `prepared statement "${name}" already exists` });
    this.pushRaw(FrontendType.Parse, { kind: 'parse', refusal });
    return null;
  }

  /**
   * A Parse the server refused or skipped (after an error before it): Postgres made no statement,
   * so the client's names for it are gone, and it may parse them again.
   */
  parseFailed(statement: ClientStatement): void {
    for (const [name, prepared] of this.statements) if (prepared.shared === statement && name !== '') this.statements.delete(name);
  }

  /**
   * A request answered with an error without being run: the statements it parses were not made
   * either, and the names it deallocates stay (last first, as ResponsePlan undoes what it skips).
   */
  unanswered(request: Request): void {
    const items = request.items;
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i]!;
      if (item.kind === 'parse') this.parseFailed(item.statement);
      else if (dropsServerStatements(item) && !item.entry.drop.ran) item.entry.drop.undo();
    }
    if (request.local !== null) restoreDeallocated(request.local);
  }

  /** Whether the client holds a statement it prepared through the protocol under `name` (named: shared). */
  private holds(name: string): boolean {
    return name !== '' && this.statements.has(name);
  }

  /**
   * The end of a simple Query that changes the session. A DEALLOCATE of a statement the client
   * prepared through the protocol, alone in the Query and in its request, is answered here: on
   * servers the statement has a shared name (others may use it), so what goes is the client's
   * name. One among other statements goes to the server as it came (where the client's name is
   * unknown: 26000), and the name stays. DEALLOCATE ALL and DISCARD ALL drop every statement the
   * client prepared, and the server's (dropsServerStatements), where the server runs them.
   */
  private endQueryWithEffects(type: number, analysis: StatementEffects): Request {
    const name = this.current.length === 0 ? deallocatedBy(analysis) : null;
    if (name !== null && this.holds(name)) {
      const step = this.deallocation(name);
      this.statements.delete(name);
      const request = this.endRequest(type, QUERY, true);
      request.local = [step, SYNC_STEP];
      return request;
    }
    if (!dropsStatements(analysis.effects, analysis.statements)) return this.endRequest(type, QUERY, true);
    return this.endRequest(type, { kind: 'query', drop: this.forgetNamed() }, true);
  }

  /** The effects of an Execute's statement join the request's; returns the Execute's plan entry. */
  private executeEffects(effects: readonly SessionEffect[]): PlanEntry {
    this.currentEffects.push(...effects);
    // A Parse takes one statement.
    if (!dropsStatements(effects, 1)) return EXECUTE;
    return { kind: 'execute', drop: this.forgetNamed() };
  }

  /** The answer to an Execute of a statement the ambassador answers for. */
  private executeStep(command: DirectiveCommand): void {
    if (command.kind !== 'deallocate') return this.local({ kind: 'execute', command });
    // Answered here only in a request answered here, and while the client holds the name (it may
    // have deallocated it since the Parse): otherwise a server runs it.
    if (!this.currentLocal || !this.holds(command.name)) return this.notLocal();
    const step = this.deallocation(command.name);
    this.changing(this.statements, command.name);
    this.statements.delete(command.name);
    this.local(step);
  }

  /** The step that answers a DEALLOCATE of the client's statement `name` (still held), with its undoing. */
  private deallocation(name: string): LocalStep {
    const prepared = this.statements.get(name)!;
    const restore = (): void => {
      if (!this.statements.has(name)) this.statements.set(name, prepared);
    };
    return { kind: 'execute', command: { kind: 'deallocate', name, restore } };
  }

  /**
   * DEALLOCATE ALL or DISCARD ALL: every statement the client named is gone (the unnamed one
   * stays, as in Postgres), unless the server does not run it (StatementDrop.undo: each name
   * comes back that the client has not used again since).
   */
  private forgetNamed(): StatementDrop {
    const forgotten: Array<[string, Prepared]> = [];
    for (const [name, prepared] of this.statements) {
      if (name === '') continue;
      this.changing(this.statements, name);
      this.statements.delete(name);
      forgotten.push([name, prepared]);
      (this.forgottenInExchange ??= []).push(name);
    }
    return {
      ran: false,
      undo: () => {
        for (const [name, prepared] of forgotten) if (!this.statements.has(name)) this.statements.set(name, prepared);
      },
    };
  }

  private pushParse(statement: ClientStatement, unnamed: boolean): null {
    this.addItem({ kind: 'parse', statement, unnamed });
    this.currentBytes += ITEM_BYTES_RENAMED;
    return null;
  }

  /** A Parse of the unnamed statement with the same bytes as the last one read. */
  private repeatsUnnamedParse(): boolean {
    const { chunk, start, end } = this;
    const last = this.unnamedParse;
    // Both Parse messages: the same length, then the same payload.
    return this.unnamedText !== null && last !== null && last.length === end - start && sameBytes(chunk, start + 5, last, 5, last.length - 5);
  }

  private onBind(): null {
    const { chunk, start, end } = this;
    const names = readable(this.readBindNames);
    if (names === null) return this.unreadable(FrontendType.Bind);
    const { portal, statement, portalEnd, restOffset } = names;
    const prepared = this.statements.get(statement);
    this.changing(this.portals, portal);
    if (prepared !== undefined) this.portals.set(portal, prepared);
    else this.portals.delete(portal);
    // Answered here only without parameters and with text results, as a directive is run.
    if (prepared?.local && bindsNothing(chunk, restOffset, end)) this.local(BIND_STEP);
    else this.notLocal();
    const shared = prepared?.shared ?? null;
    let serverName: string | null = statement;
    let rename: Buffer | null = null;
    let unnamedParse: Buffer | null = null;
    let exchangeParse: Buffer | null = null;
    if (prepared === undefined && this.neverPrepared(statement)) {
      // Postgres answers 26000; so does the server, for a name nothing has (not for the client's:
      // another client may have left a statement of that name on the server connection).
      serverName = MISSING_STATEMENT;
      rename = MISSING_STATEMENT_BYTES;
    } else if (shared !== null) {
      serverName = shared.serverName;
      rename = shared.nameBytes;
    } else if (statement === '') {
      // The client's unnamed statement goes as it came, behind its Parse when that went in an
      // earlier exchange (maybe to another server).
      serverName = null;
      if (this.unnamedInExchange) exchangeParse = this.unnamedParse;
      else unnamedParse = this.unnamedParse;
    }
    // Otherwise a name the ambassador does not know goes as it is: the server answers 26000 as
    // Postgres would, or runs what the session prepared with SQL PREPARE (a pinned session).
    const relies = shared !== null && statement !== '';
    this.addItem({ kind: 'bind', chunk, start, end, portalEnd, restOffset, serverName, rename, source: shared, unnamedParse, exchangeParse, relies });
    this.currentBytes += end - start; // it holds the client's bytes until it is sent
    return null;
  }

  private onTarget(type: number): null {
    const target = readable(this.readTarget);
    if (target === null) return this.unreadable(type);
    const { kind, name } = target;
    if (this.currentLocal) this.targetStep(type, kind, name);
    const missing = kind === 'S' && this.neverPrepared(name);
    if (kind === 'P' || (type === FrontendType.Close && name === '' && !missing && !this.statements.get('')?.shared)) {
      if (kind === 'P' && type === FrontendType.Close) {
        this.changing(this.portals, name);
        this.portals.delete(name);
      } else if (kind === 'S') {
        // The client's own unnamed statement, closed on the lease: gone for the client too (a
        // Bind of it fails, as in Postgres, instead of replaying its Parse).
        this.dropUnnamed();
      }
      this.pushRaw(type, type === FrontendType.Close ? CLOSE : kind === 'P' ? this.portalDescribed(name) : DESCRIBE_PORTAL);
    } else if (type === FrontendType.Describe) {
      // Of a statement the client never prepared: the server answers 26000 (see onBind). Of its
      // own unnamed one, parsed in an earlier exchange: its Parse goes first, as for a Bind.
      const source = missing ? null : (this.statements.get(name)?.shared ?? null);
      const ownUnnamed = name === '' && !missing && source === null;
      const unnamedParse = ownUnnamed && !this.unnamedInExchange ? this.unnamedParse : null;
      const exchangeParse = ownUnnamed && this.unnamedInExchange ? this.unnamedParse : null;
      this.addItem({ kind: 'describe', serverName: missing ? MISSING_STATEMENT : (source?.serverName ?? name), source, unnamedParse, exchangeParse });
      this.currentBytes += ITEM_BYTES_RENAMED;
    } else if (missing || this.statements.has(name) || isServerStatementName(name)) {
      // Other clients may share the server statement: forget the client's name, close nothing.
      // (Nor is a statement of the ambassador's own naming closed for a client that names it.)
      // A shared unnamed statement (pool.cacheUnnamedStatements): a Bind of it fails as in Postgres.
      if (name === '') this.dropUnnamed();
      else {
        this.changing(this.statements, name);
        this.statements.delete(name);
      }
      this.replaceMessage(CLOSE_CLOSED_STATEMENT);
      this.pushRaw(type, CLOSE);
    } else {
      // A name the ambassador does not know (made with SQL PREPARE, which pins the session): the
      // server's to close, as a Bind of it is the server's to run.
      this.pushRaw(type, CLOSE);
    }
    return null;
  }

  /**
   * A Describe of portal `name`: the Bind that made it in this request (the last one) does not
   * rely on the client's description of its statement. The answer tells the shape of that
   * statement when none is noted yet (result-shapes.ts): a plan entry of its own then, the shared
   * one otherwise.
   */
  private portalDescribed(name: string): PlanEntry {
    const items = this.current;
    let statement: ClientStatement | null | undefined;
    for (let i = items.length - 1; i >= 0 && statement === undefined; i--) {
      const item = items[i]!;
      if (item.kind !== 'bind' || !bindsPortal(item, name)) continue;
      // Of a named statement (relies): the unnamed one, shared under cacheUnnamedStatements, is
      // never checked, and its shape is not read for every new text.
      statement = item.relies ? item.source : null;
      item.relies = false;
    }
    // Bound in an earlier request (of the same transaction), or in this one: the statement it was bound from.
    if (statement === undefined) statement = this.portals.get(name)?.shared;
    return statement?.shape === null ? { kind: 'describe-portal', shows: statement } : DESCRIBE_PORTAL;
  }

  /**
   * Whether the client has no statement `name` that a server may hold for it: no unnamed one
   * (never parsed, closed, or dropped by a Query), or a name of the ambassador's form it did not
   * prepare. Any other unknown name may be the session's own (SQL PREPARE, which pins it to its
   * server).
   */
  private neverPrepared(name: string): boolean {
    return name === '' ? this.unnamedParse === null : !this.statements.has(name) && isServerStatementName(name);
  }

  /** The answer to a Describe or Close of a statement or portal the ambassador answers for. */
  private targetStep(type: number, kind: 'S' | 'P', name: string): void {
    const command = (kind === 'S' ? this.statements : this.portals).get(name)?.local;
    if (command === null || command === undefined) return this.notLocal();
    this.local(type === FrontendType.Close ? CLOSE_STEP : { kind: 'describe', command, statement: kind === 'S' });
  }

  /**
   * A Parse, Bind, Describe or Close the ambassador cannot read goes on as it came (a Parse as an
   * unnamed one, so that nothing is created under a name not tracked here): the server rejects it
   * as Postgres does (08P01, then everything up to Sync skipped) and the session goes on.
   */
  private unreadable(type: number): null {
    const payload = this.payload();
    this.notLocal();
    this.currentTexts = null;
    const nameEnd = payload.indexOf(0);
    const message = frameMessage(type, type === FrontendType.Parse && nameEnd > 0 ? payload.subarray(nameEnd) : payload);
    this.replaceMessage(message);
    if (type === FrontendType.Parse) {
      this.changingUnnamed();
      this.unnamedParse = message;
      this.unnamedText = null;
      this.unnamedCommand = null;
      this.unnamedShared = null;
      this.unnamedInExchange = true;
    }
    this.pushRaw(type, unreadableEntry(type));
    return null;
  }

  private addEffects(effects: readonly SessionEffect[] | undefined): void {
    if (effects && effects.length > 0) this.currentEffects.push(...effects);
  }

  /** An exchange with a DEALLOCATE ALL or DISCARD ALL in it ended: what names the statements it forgot waits for its answer now. */
  private endDropExchange(names: readonly string[]): void {
    const forgotten = (this.forgottenByDrops ??= new Set());
    for (const name of names) forgotten.add(name);
    this.forgottenInExchange = null;
  }

  private endRequest(type: number, entry: PlanEntry | null, completes: boolean, texts: Request['texts'] = this.currentTexts): Request {
    this.pushRaw(type, entry, true);
    const items = this.current;
    // Most requests change nothing in the session: they share one empty list (frozen), and the
    // builder keeps its own empty one.
    const effects = this.currentEffects.length === 0 ? NO_EFFECTS : this.currentEffects;
    const bytes = this.currentBytes;
    // Answered here only when it ends in Sync (a ReadyForQuery closes the answer), and has more
    // than the Sync (a lone Sync may close an exchange left open on a server).
    const steps = this.currentSteps;
    const local = this.currentLocal && type === FrontendType.Sync && steps !== null && steps.length > 1 ? steps : null;
    if (this.undo !== null) {
      if (local !== null || this.skippedOnServer) for (let i = this.undo.length - 1; i >= 0; i--) this.undo[i]!();
      this.undo = null;
      this.skippedOnServer = false;
    }
    // Not answered here after all (something else in it goes to a server): it deallocates nothing.
    if (local === null && steps !== null && steps.length > 1) restoreDeallocated(steps);
    this.currentLocal = true;
    this.currentSteps = null;
    this.current = NO_ITEMS;
    this.chunk = EMPTY; // not kept alive by the builder
    this.body = null;
    if (effects !== NO_EFFECTS) this.currentEffects = [];
    this.currentTexts = NO_TEXTS;
    this.currentBytes = 0;
    if (completes) {
      this.unnamedInExchange = false;
      if (this.forgottenInExchange !== null) this.endDropExchange(this.forgottenInExchange);
    }
    const first = items[0]!;
    // Retrying is only invisible when the request itself describes the portal again: a client
    // that relies on its cached row description (postgres.js) must see the error instead.
    // A shared unnamed statement is one the client just parsed: whatever it expects of it, it
    // expects of the text, as it would get from a server that parsed it again.
    const retryable = completes && ((first.kind === 'bind' && first.source !== null && describesPortal(items)) || (first.kind === 'parse' && first.unnamed));
    return { items, effects, completes, retryable, texts, route: null, avoid: null, retried: false, bytes, local };
  }
}

/** Undoes a change of `map[key]`: puts back what it holds now. */
function restoring(map: Map<string, Prepared>, key: string): () => void {
  const before = map.get(key);
  return () => (before === undefined ? map.delete(key) : map.set(key, before));
}

/** The whole message an item holds (a view: for tests and rare paths, not for sending). */
export function messageOf(item: MessageBytes): Buffer {
  return item.chunk.subarray(item.start, item.end);
}

/** A Bind with no parameters (nor parameter formats) that asks for its results in text: what follows its names is `bytes[restOffset, end)`. */
function bindsNothing(bytes: Buffer, restOffset: number, end: number): boolean {
  if (end < restOffset + 6 || bytes.readUInt16BE(restOffset) !== 0 || bytes.readUInt16BE(restOffset + 2) !== 0) return false;
  const results = bytes.readUInt16BE(restOffset + 4);
  if (end !== restOffset + 6 + 2 * results) return false;
  for (let i = 0; i < results; i++) if (bytes.readUInt16BE(restOffset + 6 + 2 * i) !== 0) return false;
  return true;
}

function describesPortal(items: readonly Item[]): boolean {
  for (const item of items) if (item.kind === 'raw' && item.entry?.kind === 'describe-portal') return true;
  return false;
}

/** Whether a Bind binds portal `name` (compared with its bytes, without a string for the unnamed portal). */
function bindsPortal(bind: MessageBytes & BindLayout, name: string): boolean {
  const from = bind.start + 5;
  if (name === '') return bind.portalEnd === from;
  return bind.portalEnd - from === Buffer.byteLength(name) && bind.chunk.toString('utf8', from, bind.portalEnd) === name;
}

/** What `decode` read, or null when the message is malformed (the decoders throw RangeError). */
function readable<T>(decode: () => T): T | null {
  try {
    return decode();
  } catch (err) {
    if (err instanceof RangeError) return null;
    throw err;
  }
}

/** What the server answers an unreadable message with when it accepts it after all. */
function unreadableEntry(type: number): PlanEntry {
  switch (type) {
    case FrontendType.Parse:
      return { kind: 'parse' };
    case FrontendType.Bind:
      return { kind: 'bind' };
    case FrontendType.Close:
      return { kind: 'close' };
    default:
      return { kind: 'describe-statement' };
  }
}

/** The statement a text deallocates when that is all it does (DEALLOCATE [PREPARE] name), or null. */
function deallocatedBy(analysis: StatementEffects): string | null {
  if (analysis.statements !== 1 || analysis.effects.length !== 1) return null;
  const effect = analysis.effects[0]!;
  return effect.kind === 'sql-deallocate' && effect.name !== 'ALL' ? effect.name : null;
}

/** The ambassador's own statement a Parse's text is when it only deallocates (answered here while the client holds the name). */
function deallocateCommand(analysis: StatementEffects): DeallocateCommand | null {
  if (analysis.effects.length === 0) return null;
  const name = deallocatedBy(analysis);
  return name === null ? null : { kind: 'deallocate', name };
}

/**
 * Whether `effects` (of `statements` statements) drop every prepared statement of the session:
 * DEALLOCATE ALL, or DISCARD ALL, which Postgres runs only alone (never inside a transaction
 * block, which a Query of several statements is). DISCARD PLANS keeps them.
 */
function dropsStatements(effects: readonly SessionEffect[], statements: number): boolean {
  for (const e of effects) {
    if (e.kind === 'sql-deallocate' && e.name === 'ALL') return true;
    if (e.kind === 'discard' && e.what === 'all' && statements === 1) return true;
  }
  return false;
}

/** A Query or Execute that runs DEALLOCATE ALL or DISCARD ALL. */
export type DropItem = Extract<Item, { kind: 'raw' }> & { entry: DropEntry };

/**
 * Whether an item runs DEALLOCATE ALL or DISCARD ALL: the server's statements, the shared ones
 * too, are gone once it has run (in message order: the forwarder's materializeInOrder).
 */
export function dropsServerStatements(item: Item): item is DropItem {
  const entry = item.kind === 'raw' ? item.entry : null;
  return (entry?.kind === 'query' || entry?.kind === 'execute') && entry.drop !== undefined;
}

/** Whether a request's steps deallocate a statement of the client's (its answer depends on the transaction's state). */
export function deallocates(steps: readonly LocalStep[]): boolean {
  for (const step of steps) if (step.kind === 'execute' && step.command.kind === 'deallocate') return true;
  return false;
}

/** A request whose steps deallocate goes to a server after all (it is not answered here): the names stay the client's. */
export function restoreDeallocated(steps: readonly LocalStep[]): void {
  for (const step of steps) if (step.kind === 'execute' && step.command.kind === 'deallocate') step.command.restore?.();
}

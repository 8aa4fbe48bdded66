// What a leased server must be told before a client's request can go (transaction pooling):
// its settings replayed when they differ from the client's, the statements the request relies
// on created when the server lacks them (closing an outdated form first), room made in the
// server's statement cache, and a Describe of each statement whose result shape a Bind relies
// on and the server's is not known (result-shapes.ts). Pure planning: nothing is sent and
// nothing is changed here.

import { Buffer } from 'node:buffer';
import type { BackendConnection } from '../backend/connection.ts';
import { decodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../protocol/frontend.ts';
import { frameMessage } from '../protocol/writer.ts';
import type { Item, Request } from './request-builder.ts';
import { shapeUnverified } from './result-shapes.ts';
import type { ClientStatement } from './statements.ts';

const FLUSH = frameMessage(FrontendType.Flush, Buffer.alloc(0));

export interface PreparationContext {
  /** The client's settings, and whether they may be replayed now (nothing in flight, idle). */
  stateKey: string;
  syncStatements: readonly string[];
  canSyncState: boolean;
  /** Most statements a server connection keeps. */
  capacity: number;
  /** The unnamed statement the request binds was re-created on this server already (by the preparation just done). */
  unnamedReplayed?: boolean;
  /**
   * Inside the client's exchange left open without Sync (a Sync would end its implicit
   * transaction): statements only, with Flush; canSyncState must be false.
   */
  inExchange?: boolean;
}

export interface Preparation {
  messages: Buffer[];
  /** ReadyForQuery messages that answer `messages` (none inside an exchange). */
  readies: number;
  /** The Parse and Close messages among them: inside an exchange, what answers them. */
  acknowledgements: number;
  syncsState: boolean;
  /** Statements the server holds once this succeeds. */
  created: string[];
  /** Statements closed to make room (outdated ones first), and outdated ones closed before being re-created. */
  evicted: string[];
  refreshed: string[];
  /** Statements described (after they are made), in order: their shapes, for result-shapes.ts learnShapes. */
  described: string[];
}

/** The preparation `request` needs on `server`, or null when it can go as it is. */
export function preparationFor(server: BackendConnection, request: Request, context: PreparationContext): Preparation | null {
  const syncsState = context.canSyncState && server.stateKey !== context.stateKey;
  if (!syncsState && readyAsItIs(server, request, context.unnamedReplayed === true)) return null;
  const { replays, described } = missingStatements(server, request, context);
  const created = replays.map((p) => decodeParse(p.subarray(5)).name).filter((n) => n !== '');
  const clientParses = request.items.flatMap((i) => (i.kind === 'parse' ? [i.statement.serverName] : []));
  const refreshed = [...new Set([...created, ...clientParses.filter((n) => server.staleStatements.has(n))])];
  // An outdated statement made again takes the place it held (counted among the stale ones).
  const replaced = refreshed.filter((n) => server.staleStatements.has(n)).length;
  // One made anew while held (its shape verified) keeps its place.
  const incoming = created.filter((n) => !server.statements.has(n)).length + clientParses.filter((n) => !server.statements.has(n)).length - replaced;
  // Never close what this request creates, parses or uses.
  const used = request.items.flatMap((i) => heldStatement(i)?.serverName ?? []);
  const evicted = evictable(server, incoming, context.capacity, new Set([...created, ...clientParses, ...used]));
  const statementMessages = [
    ...evicted.map((name) => encodeTarget(FrontendType.Close, 'S', name)),
    // Closing a name the server does not hold is a harmless no-op.
    ...refreshed.map((name) => encodeTarget(FrontendType.Close, 'S', name)),
    ...replays,
    ...described.map((name) => encodeTarget(FrontendType.Describe, 'S', name)),
  ];
  if (!syncsState && statementMessages.length === 0) return null;
  const messages: Buffer[] = [];
  if (syncsState) messages.push(encodeQuery(['RESET ALL', ...context.syncStatements].join(';\n')));
  const inExchange = context.inExchange === true;
  if (statementMessages.length > 0) messages.push(...statementMessages, inExchange ? FLUSH : encodeSync());
  const readies = (syncsState ? 1 : 0) + (statementMessages.length > 0 && !inExchange ? 1 : 0);
  return { messages, readies, acknowledgements: statementMessages.length, syncsState, created, evicted, refreshed, described };
}

/**
 * The common case, checked without allocating: no Parse, and every statement the request
 * uses is on the server, its shape known there when a Bind relies on it (every request of a
 * client executing prepared statements in a loop).
 */
export function readyAsItIs(server: BackendConnection, request: Request, unnamedReplayed: boolean): boolean {
  for (const item of request.items) {
    if (item.kind === 'parse') return false;
    if ((item.kind === 'bind' || item.kind === 'describe') && item.unnamedParse !== null && !unnamedReplayed) return false;
    const statement = heldStatement(item);
    if (statement === null) continue;
    if (!server.statements.has(statement.serverName)) return false;
    if (item.kind === 'bind' && item.relies && shapeUnverified(server, statement)) return false;
  }
  return true;
}

/**
 * The shared server statement a Bind or Describe relies on; none for one that goes as it came
 * (the unnamed statement, a name the ambassador does not know), names a statement the client
 * never prepared, or is refused for its shape (a Bind of an outdated statement goes as a Parse
 * every server refuses: result-shapes.ts).
 */
function heldStatement(item: Item): ClientStatement | null {
  if ((item.kind !== 'bind' && item.kind !== 'describe') || item.source === null) return null;
  return item.kind === 'bind' && item.relies && item.source.outdated ? null : item.source;
}

/**
 * Parse messages the request relies on (Bind, Describe) that the server does not hold, and the
 * statements to describe after them: those whose shape a Bind relies on, where the server's is
 * not known or another (made anew then, also when held: shapeUnverified). One the request parses
 * itself is left to that Parse.
 */
function missingStatements(server: BackendConnection, request: Request, context: PreparationContext): { replays: Buffer[]; described: string[] } {
  const replays: Buffer[] = [];
  const described: string[] = [];
  /** Statements the request parses itself (before the item at hand), and the ones made here. */
  const parsed = new Set<string>();
  const made = new Set<string>();
  for (const item of request.items) {
    if (item.kind === 'parse') parsed.add(item.statement.serverName);
    const unnamed = item.kind === 'bind' || item.kind === 'describe' ? item.unnamedParse : null;
    if (unnamed !== null && !context.unnamedReplayed && !replays.includes(unnamed)) replays.push(unnamed);
    const statement = heldStatement(item);
    if (statement === null || parsed.has(statement.serverName)) continue;
    const name = statement.serverName;
    // A shape to verify is read from the statement made anew (closed first: see refreshed).
    const verify = item.kind === 'bind' && item.relies && shapeUnverified(server, statement);
    if ((verify || !server.statements.has(name)) && !made.has(name)) {
      replays.push(statement.parse);
      made.add(name);
    }
    if (verify && !described.includes(name)) described.push(name);
  }
  return { replays, described };
}

/**
 * Statements to close so `incoming` more fit within `capacity`: outdated ones first (the server
 * still holds each until it is closed, and none is of use before it is made again), then the
 * least recently used, oldest first.
 */
function evictable(server: BackendConnection, incoming: number, capacity: number, keep: ReadonlySet<string>): string[] {
  let excess = server.statements.size + server.staleStatements.size + incoming - capacity;
  if (excess <= 0) return [];
  const stale: string[] = [];
  for (const name of server.staleStatements) {
    if (stale.length === excess) return stale;
    if (!keep.has(name)) stale.push(name);
  }
  excess -= stale.length;
  if (excess <= 0) return stale;
  // One pass that keeps the `excess` oldest seen so far in order (excess is nearly always 1).
  const oldest: [string, number][] = [];
  for (const entry of server.statements) {
    if (keep.has(entry[0])) continue;
    if (oldest.length === excess && entry[1] >= oldest[excess - 1]![1]) continue;
    oldest.push(entry);
    for (let i = oldest.length - 1; i > 0 && oldest[i - 1]![1] > entry[1]; i--) {
      oldest[i] = oldest[i - 1]!;
      oldest[i - 1] = entry;
    }
    if (oldest.length > excess) oldest.pop();
  }
  return stale.length === 0 ? oldest.map(([name]) => name) : [...stale, ...oldest.map(([name]) => name)];
}

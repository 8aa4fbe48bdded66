// Prepared statements under transaction pooling.
//
// A client names its statements as it likes; on servers they are named by what they are: a
// hash of (query text, parameter types), so clients preparing the same statement share one
// server-side statement, and a client's statement can be re-created on whichever server it
// lands on. Each server connection keeps the statements it holds with when each was last used
// (bounded; the least recently used is closed upstream when the bound is reached), and the
// result shapes it was seen to describe them with (result-shapes.ts).

import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { BackendConnection } from '../backend/connection.ts';
import type { ResultShape } from '../protocol/backend.ts';
import { encodeParse, FrontendType, type ParseMessage } from '../protocol/frontend.ts';
import type { PlanEntry } from './response-plan.ts';

export interface ClientStatement {
  serverName: string;
  /** serverName as a Bind carries it: its bytes and a NUL. */
  nameBytes: Buffer;
  /** The statement's text (for routing). */
  query: string;
  /** The Parse to send to a server that does not hold it yet (already carries serverName). */
  parse: Buffer;
  /** What the server answers a Bind of it with, in the response plan (made once: plans never change it). */
  bindEntry: PlanEntry;
  /**
   * The result shape the client was first shown for it (the answer to its Describe of the
   * statement, or of a portal bound from it), null until then: a client that binds it without
   * describing again reads rows by that description (result-shapes.ts).
   */
  shape: ResultShape | null;
  /**
   * A server's form of it was found to have another shape than `shape` (DDL since): as in
   * Postgres, every Bind of it that relies on that description fails with 0A000 from then on.
   */
  outdated: boolean;
}

/** How every name the ambassador gives a statement on a server begins. */
const SERVER_NAME_PREFIX = 'pa_';

/**
 * Server-side name for a statement: same text and parameter types, same name. `body` is the
 * Parse payload after the client's statement name (query bytes, NUL, parameter types): bytes,
 * not decoded text, so a client in another client_encoding (LATIN1) gets its statement as sent.
 */
export function serverStatementName(body: Buffer): string {
  return `${SERVER_NAME_PREFIX}${createHash('sha1').update(body).digest('hex').slice(0, 24)}`;
}

/** Whether `name` has the form of the ambassador's own statement names (shared between clients). */
export function isServerStatementName(name: string): boolean {
  return name.startsWith(SERVER_NAME_PREFIX);
}

/** The client's Parse (`payload`, decoded as `parse`) as a shared statement: renamed, bytes kept. */
export function clientStatement(parse: ParseMessage, payload: Buffer): ClientStatement {
  const body = payload.subarray(payload.indexOf(0) + 1);
  const serverName = serverStatementName(body);
  const name = Buffer.from(`${serverName}\0`);
  const message = Buffer.allocUnsafe(5 + name.length + body.length);
  message[0] = FrontendType.Parse;
  message.writeInt32BE(4 + name.length + body.length, 1);
  name.copy(message, 5);
  body.copy(message, 5 + name.length);
  const bindEntry: PlanEntry = Object.freeze({ kind: 'bind', statement: serverName });
  return { serverName, nameBytes: name, query: parse.query, parse: message, bindEntry, shape: null, outdated: false };
}

/** A name no statement has: closing it is a no-op that still answers CloseComplete. */
export const CLOSED_STATEMENT = `${SERVER_NAME_PREFIX}closed`;

/**
 * A name no statement has, for a Bind or Describe of a statement the client never prepared (the
 * unnamed one, or a name of the ambassador's form): the server answers 26000 with this name in
 * its message, where passing the client's name on could reach what another client left on the
 * server connection.
 */
export const MISSING_STATEMENT = `${SERVER_NAME_PREFIX}not_prepared_by_this_client`;
/** MISSING_STATEMENT as a Bind carries it. */
export const MISSING_STATEMENT_BYTES = Buffer.from(`${MISSING_STATEMENT}\0`);

/**
 * A Parse every server refuses (its text is not SQL: 42601 syntax_error), and that makes nothing.
 * It goes in place of a client's Parse that Postgres refuses for a reason only the ambassador
 * knows of (a name the client holds: request-builder.ts), so that the server fails at that place
 * as Postgres would; the client gets its own error instead of this one (PlanEntry parse refusal).
 */
export const REFUSED_PARSE = encodeParse(`${SERVER_NAME_PREFIX}refused`, `${SERVER_NAME_PREFIX}refused`, Buffer.from([0, 0]));

/** Uses so far, across servers: a statement's last use orders it among its server's. */
let uses = 0;

/**
 * Marks a statement used on a server. Its entry is overwritten where it is, not moved to the
 * end: deleting and adding again on every Bind churned the map's table (shrunk when emptied,
 * grown again, rehashed to drop the holes) for what a number does as well.
 */
export function touchStatement(server: BackendConnection, name: string): void {
  server.statements.set(name, ++uses);
}

/** A statement made (again) on a server: used now, and its result shape there not known until it is described. */
export function madeStatement(server: BackendConnection, name: string): void {
  touchStatement(server, name);
  server.statementShapes.delete(name);
}

/** A statement closed on a server to make room: nothing is known of it there any more. */
export function forgetStatement(server: BackendConnection, name: string): void {
  server.statements.delete(name);
  server.staleStatements.delete(name);
  server.statementShapes.delete(name);
}

/**
 * The server holds the statement in an outdated form (its result type changed): it is no longer
 * taken as held, and is closed before it is created there again (preparation.ts). Until it is
 * closed it still takes a place among the statements the server keeps (preparation.ts counts
 * it, and closes it first to make room).
 */
export function markStale(server: BackendConnection, name: string): void {
  server.statements.delete(name);
  server.staleStatements.add(name);
  server.statementShapes.delete(name);
}

// Prepared statements under transaction pooling.
//
// A client names its statements as it likes; on servers they are named by what they are: a
// hash of (query text, parameter types), so clients preparing the same statement share one
// server-side statement, and a client's statement can be re-created on whichever server it
// lands on. Each server connection keeps an LRU set of the statements it holds (bounded;
// the least recently used is closed upstream when the bound is reached).

import { createHash } from 'node:crypto';
import type { BackendConnection } from '../backend/connection.ts';
import { encodeParse, type ParseMessage } from '../protocol/frontend.ts';

export interface ClientStatement {
  serverName: string;
  /** The statement's text (for routing). */
  query: string;
  /** The Parse to send to a server that does not hold it yet (already carries serverName). */
  parse: Buffer;
}

/** Server-side name for a statement: same text and parameter types, same name. */
export function serverStatementName(query: string, paramTypes: Buffer): string {
  return `pa_${createHash('sha1').update(query).update('\0').update(paramTypes).digest('hex').slice(0, 24)}`;
}

export function clientStatement(parse: ParseMessage): ClientStatement {
  const serverName = serverStatementName(parse.query, parse.paramTypes);
  return { serverName, query: parse.query, parse: encodeParse(serverName, parse.query, parse.paramTypes) };
}

/** A name no statement has: closing it is a no-op that still answers CloseComplete. */
export const CLOSED_STATEMENT = 'pa_closed';

/** Marks a statement used on a server (most recently used last). */
export function touchStatement(server: BackendConnection, name: string): void {
  server.statements.delete(name);
  server.statements.set(name, true);
}

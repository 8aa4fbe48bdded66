// The result shapes of prepared statements under transaction pooling. A client's statement is a
// statement shared by text on the servers (statements.ts), made again on whichever server lacks
// it: made again after DDL, it has the table's new shape, where Postgres answers a statement the
// client prepared before the DDL with 0A000 "cached plan must not change result type". A driver
// that described the statement once and binds it without describing again (postgres.js) reads
// each row by the columns it was shown: it must get that error, not rows of another shape.
//
// So two things are kept: the shape each client statement was first shown with
// (ClientStatement.shape), and the shape each server connection was seen to describe a statement
// it holds with (BackendConnection.statementShapes). A statement's shape on a server does not
// change while the server holds it (Postgres fails it instead), and an entry goes when the
// statement is made again there (statements.ts madeStatement). A Bind that relies on the client's
// description (no Describe of its portal follows in its request: request-builder.ts) goes only to
// a server whose shape for it is known: when it is not, the preparation describes it there
// (preparation.ts); when it differs, the Bind fails with 0A000 as in Postgres, and so does every
// such Bind of that client statement from then on (outdated), until the client closes it (it
// may prepare the text again under another name, as postgres.js does on that error). A request
// that describes its portal gets the new description, and nothing is checked; nor is the unnamed
// statement (parsed again by the client for each run, or described with it: pg, pgbench).
//
// Cost: a Describe's answer is read only while something is not known yet (once per client
// statement and per server statement); a relying Bind costs one lookup on its server.

import type { BackendConnection } from '../backend/connection.ts';
import { BackendType, decodeErrorFields, decodeResultShape, encodeErrorResponse, NO_RESULT, type ResultShape } from '../protocol/backend.ts';
import type { Item } from './request-builder.ts';
import type { PlanEntry } from './response-plan.ts';
import { type ClientStatement, markStale } from './statements.ts';

const CACHED_PLAN_CHANGED = 'cached plan must not change result type';

/**
 * What Postgres answers a Bind of a statement whose result type changed; with its routine, on
 * which postgres.js prepares the statement again under another name and runs it again.
 */
export const CACHED_PLAN_ERROR = encodeErrorResponse({ severity: 'ERROR', code: '0A000', message: CACHED_PLAN_CHANGED, routine: 'RevalidateCachedQuery' });

/**
 * A Bind refused for its shape goes on as REFUSED_PARSE (statements.ts), which the server fails
 * at that place (skipping the rest up to Sync, failing a transaction block) as Postgres fails the
 * Bind; the client gets CACHED_PLAN_ERROR in place of the server's error.
 */
export const SHAPE_REFUSAL: PlanEntry = Object.freeze({ kind: 'parse', refusal: CACHED_PLAN_ERROR });

/** A server's shape that could not be read: never the shape a client was shown. */
const UNREADABLE: ResultShape = '?';

/** Whether an ErrorResponse payload is 0A000 "cached plan must not change result type". */
export function isCachedPlanError(payload: Buffer): boolean {
  const fields = decodeErrorFields(payload);
  return fields.get('C') === '0A000' && (fields.get('M') ?? '').startsWith(CACHED_PLAN_CHANGED);
}

/**
 * Whether `server` must make `statement` anew and describe it before a Bind that relies on the
 * shape the client was shown may go there: the client was shown one, and the server's is not
 * known or is another. Another may be the server's that is out of date (described there before
 * DDL that came before the client's own Describe), so only a shape read fresh decides
 * (judgeShapes); and a statement held but never described there may be outdated there, where a
 * Describe of it fails with 0A000 while a new one would not.
 */
export function shapeUnverified(server: BackendConnection, statement: ClientStatement): boolean {
  return statement.shape !== null && !statement.outdated && server.statementShapes.get(statement.serverName) !== statement.shape;
}

/**
 * After a preparation made and described the statements `described` on `server` (learnShapes):
 * each of them that a Bind of `request` relies on and whose fresh shape is another than the one
 * its client was shown is outdated, so that Bind is refused (shapeRefused) instead of prepared again.
 */
export function judgeShapes(server: BackendConnection, request: { readonly items: readonly Item[] }, described: readonly string[]): void {
  if (described.length === 0) return;
  for (const item of request.items) {
    if (item.kind !== 'bind' || !item.relies || item.source === null) continue;
    const statement = item.source;
    if (statement.shape === null || statement.outdated || !described.includes(statement.serverName)) continue;
    if (server.statementShapes.get(statement.serverName) !== statement.shape) statement.outdated = true;
  }
}

/**
 * Whether a Bind of `statement` that relies on the shape the client was shown fails on `server`
 * (0A000): the statement is outdated, or the server's shape for it is known and another. The
 * statement is outdated from then on.
 */
export function shapeRefused(server: BackendConnection, statement: ClientStatement): boolean {
  if (statement.shape === null) return false;
  if (statement.outdated) return true;
  const held = server.statementShapes.get(statement.serverName);
  if (held === undefined || held === statement.shape) return false;
  statement.outdated = true;
  return true;
}

/**
 * A RowDescription or NoData (`type`, its payload `bytes[from, to)`) answered the client's
 * Describe of `statement` (or of a portal bound from it) on `server`: the shape is noted where
 * none is known yet, for the client statement and for the server's.
 */
export function noteDescribed(server: BackendConnection, statement: ClientStatement, type: number, bytes: Buffer, from: number, to: number): void {
  if (statement.shape !== null && server.statementShapes.has(statement.serverName)) return;
  const shape = type === BackendType.NoData ? NO_RESULT : decodeResultShape(bytes, from, to);
  if (shape === null) return;
  statement.shape ??= shape;
  server.statementShapes.set(statement.serverName, shape);
}

/**
 * A preparation described the statements `described` (server names, in order) and got `shapes`:
 * every RowDescription and NoData of its exchange, the Describes' last (a settings replay before
 * them may return rows). Done without error, each is the server's shape now (one that could not
 * be read matches no client's, so that the preparation is not asked for again). Failed on 0A000,
 * a statement the server held was outdated there (which one is not known): each is closed and
 * made again next time.
 */
export function learnShapes(server: BackendConnection, described: readonly string[], shapes: ReadonlyArray<ResultShape | null>, error: Buffer | null): void {
  if (error === null) {
    const first = shapes.length - described.length;
    for (let i = 0; i < described.length; i++) server.statementShapes.set(described[i]!, (first + i >= 0 ? shapes[first + i] : null) ?? UNREADABLE);
  } else if (isCachedPlanError(error)) {
    for (const name of described) if (server.statements.has(name)) markStale(server, name);
  }
}

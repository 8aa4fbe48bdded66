// Which errors the soak expects. Two causes are on purpose: a client destroying its own socket
// (the disconnect worker counts those itself) and a replica restart. An error is expected from a
// restart only when it says a connection or server went away (SQLSTATE class 08, 57P01-57P03, or a
// driver's "connection closed" error) and the operation overlapped a restart window (from the
// stop until some seconds after the replica is back, while the ambassador's health loop notices).
// Everything else is unexpected: other SQLSTATEs, timeouts, and wrong answers (WrongAnswer). Pure;
// unit-tested.

import type { WorkKind } from './kinds.ts';
import type { OpOutcome } from './op-window.ts';

/** A query that returned, with rows that are not what the statement must return. */
export class WrongAnswer extends Error {
  override name = 'WrongAnswer';
}

/** Throws WrongAnswer unless actual === expected. */
export function expectEqual(actual: unknown, expected: unknown, what: string): void {
  if (actual !== expected) throw new WrongAnswer(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

/** The only row of `rows`; throws WrongAnswer when there is not exactly one. */
export function onlyRow(rows: ReadonlyArray<Record<string, unknown>> | undefined, what: string): Record<string, unknown> {
  // pg leaves `rows` undefined (and answers an array of results) when one Query produced several results.
  if (!Array.isArray(rows)) throw new WrongAnswer(`${what}: expected one result with rows, got ${rows === undefined ? 'several results' : typeof rows}`);
  if (rows.length !== 1) throw new WrongAnswer(`${what}: expected 1 row, got ${rows.length}`);
  return rows[0]!;
}

/**
 * A server error that reached a client with no query running (after its ReadyForQuery): pg then
 * marks the client unusable ("Client has encountered a connection error and is not queryable").
 * Never expected: a proxy must not pass a pooled server's later messages to a client that is done
 * with it.
 */
export class StrayServerError extends Error {
  override name = 'StrayServerError';
  readonly code = 'STRAY';

  constructor(error: { severity?: unknown; code?: unknown; message: string }) {
    super(`the client received ${String(error.severity)} ${String(error.code)} "${error.message}" with no query running, and is unusable`);
  }
}

/** An operation that did not settle within its deadline. */
export class OperationTimeout extends Error {
  override name = 'OperationTimeout';
}

/** The SQLSTATE of a server error (pg: `code`; postgres.js: `code` too), or undefined. */
function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

const LOST_CONNECTION_STATES = /^(08...|57P0[123])$/;
/** What pg, postgres.js and Node say when the socket closes under a query. */
const LOST_CONNECTION_MESSAGES = /Connection terminated|ECONNRESET|EPIPE|ECONNREFUSED|CONNECTION_CLOSED|CONNECTION_ENDED|CONNECTION_DESTROYED|socket hang up|write after end/i;

/** Whether the error says that a connection or its server went away. */
export function isLostConnection(error: unknown): boolean {
  if (error instanceof WrongAnswer || error instanceof OperationTimeout || error instanceof StrayServerError) return false;
  const state = sqlState(error);
  if (state !== undefined) return LOST_CONNECTION_STATES.test(state);
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return LOST_CONNECTION_MESSAGES.test(`${String(code ?? '')} ${String(message ?? '')}`);
}

/** A time span in epoch ms; `toMs` null while it is still open. */
export interface TimeWindow {
  fromMs: number;
  toMs: number | null;
}

/** Whether [startMs, endMs] meets any window, each window extended by graceMs after its end. */
export function overlapsAny(windows: readonly TimeWindow[], startMs: number, endMs: number, graceMs: number): boolean {
  return windows.some((window) => startMs <= (window.toMs === null ? Infinity : window.toMs + graceMs) && endMs >= window.fromMs);
}

export interface ErrorContext {
  startMs: number;
  endMs: number;
  restarts: readonly TimeWindow[];
  /** How long after a replica is back its errors are still expected (health loop, pool cleanup). */
  graceMs: number;
}

/** Expected or unexpected; see the top of this file. */
export function classifyError(error: unknown, context: ErrorContext): Exclude<OpOutcome, 'ok'> {
  if (!isLostConnection(error)) return 'unexpected';
  return overlapsAny(context.restarts, context.startMs, context.endMs, context.graceMs) ? 'expected' : 'unexpected';
}

/** A short, stable description of an error for grouping: SQLSTATE or code, and the message without numbers. */
export function errorKey(error: unknown): string {
  const { code, message, name } = (error ?? {}) as { code?: unknown; message?: unknown; name?: unknown };
  const text = String(message ?? error).split('\n')[0]!.replace(/\b\d+\b/g, 'N').slice(0, 160);
  const label = code !== undefined ? String(code) : String(name ?? 'Error');
  return `${label}: ${text}`;
}

export interface ErrorEntry {
  kind: WorkKind;
  outcome: Exclude<OpOutcome, 'ok'>;
  key: string;
  count: number;
  /** Seconds into the run of the first and last occurrence. */
  firstS: number;
  lastS: number;
  /** The first occurrence's stack (unexpected errors only), for finding where it came from. */
  example: string | null;
}

/** The first lines of the error's stack, or its text. */
export function errorExample(error: unknown, lines = 8): string {
  const text = error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
  return text.split('\n').slice(0, lines).join('\n');
}

/** Counts errors by (kind, outcome, key) for the report. */
export class ErrorLog {
  readonly #entries = new Map<string, ErrorEntry>();

  add(kind: WorkKind, outcome: Exclude<OpOutcome, 'ok'>, key: string, atS: number, example: string | null = null): void {
    const id = `${kind}\u0000${outcome}\u0000${key}`;
    const entry = this.#entries.get(id);
    if (entry) {
      entry.count++;
      entry.lastS = atS;
    } else {
      this.#entries.set(id, { kind, outcome, key, count: 1, firstS: atS, lastS: atS, example });
    }
  }

  /** Unexpected first, then by count. */
  entries(): ErrorEntry[] {
    return [...this.#entries.values()].sort((a, b) => (a.outcome === b.outcome ? b.count - a.count : a.outcome === 'unexpected' ? -1 : 1));
  }
}

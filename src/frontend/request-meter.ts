// One client's measurements, kept by its forwarder: each request sent to a server is matched
// with its ReadyForQuery (FIFO, as Postgres answers in order) to time queries and transactions;
// waits for a server, errors sent to the client, and bytes both ways go to the database's
// totals (traffic.ts). It also logs queries when logging.queries asks for it: `all`, or `slow`
// (at least slowQueryThreshold), with the SQL text cut to MAX_LOGGED_TEXT characters and the W3C
// traceparent of a sqlcommenter comment; parameter values (Bind) are never logged.
//
// Hot path: with query logging off a request costs one performance.now() going out and one
// coming back; nothing is allocated. The oldest request in flight is kept in the meter's own
// fields, so a client with one request at a time (most of them) touches nothing else; those
// pipelined behind it wait in three rings (their send times unboxed in a Float64Array). With
// hundreds of clients taking turns, each ring was more memory to reach per request.

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { TransactionStatus } from '../protocol/backend.ts';
import { summarizeError } from '../protocol/backend.ts';
import type { DatabaseTraffic, TrafficRoute } from './traffic.ts';
import { Fifo, NumberFifo } from '../lib/fifo.ts';

export type QueryLogging = 'off' | 'slow' | 'all';

export interface QueryLogSettings {
  queries: QueryLogging;
  /** ms; with `slow`, queries at least this long are logged. */
  slowQueryThresholdMs: number;
}

/** The text of a request sent while query logging was off (not logged if it is turned on meanwhile). */
const NOT_RECORDED: readonly string[] = Object.freeze([]);

/** Longest SQL text written to a log line; the rest is cut (the length is logged). */
export const MAX_LOGGED_TEXT = 2000;

/** sqlcommenter: `traceparent='00-<32 hex>-<16 hex>-<2 hex>'` (the value may be URL-encoded). */
const TRACEPARENT = /\btraceparent\s*=\s*'((?:[0-9a-f]{2})-(?:[0-9a-f]{32})-(?:[0-9a-f]{16})-(?:[0-9a-f]{2}))'/i;

/** The W3C traceparent a sqlcommenter comment in `sql` carries, or undefined. */
export function traceparentOf(sql: string): string | undefined {
  if (!sql.includes('traceparent')) return undefined;
  const match = TRACEPARENT.exec(sql.includes('%') ? safeDecode(sql) : sql);
  return match?.[1]?.toLowerCase();
}

/** `PASSWORD '...'` literals (CREATE/ALTER ROLE) become `PASSWORD '[redacted]'` in logged SQL. */
const PASSWORD_LITERAL = /\b(PASSWORD\s+)(?:E?'(?:[^']|'')*'|\$([A-Za-z_]*)\$[\s\S]*?\$\2\$)/gi;

export function redactPasswords(sql: string): string {
  return /password/i.test(sql) ? sql.replace(PASSWORD_LITERAL, "$1'[redacted]'") : sql;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export class RequestMeter {
  /** performance.now() when the oldest request in flight was sent; -1: none in flight. */
  private headSentAt = -1;
  private headRoute: TrafficRoute = 'primary';
  /** Its SQL texts (only while query logging is on). */
  private headTexts: readonly string[] | null = null;
  /** The same for the requests in flight behind it, oldest first. */
  private readonly sentAt = new NumberFifo();
  private readonly texts = new Fifo<readonly string[] | null>();
  private readonly routes = new Fifo<TrafficRoute>();
  private transactionStart = -1;
  /** performance.now() of the last request sent (SHOW CLIENTS request_time); -1: none yet. */
  lastRequestAt = -1;
  /** performance.now() since when the client waits for a server; -1: not waiting. */
  waitingSince = -1;
  /** Texts of Query/Parse messages seen before the request that ends them (session mode). */
  private pendingTexts: string[] | null = null;

  constructor(
    readonly traffic: DatabaseTraffic,
    private readonly log: Logger,
    private logging: QueryLogSettings,
  ) {}

  /** Whether SQL texts are wanted (query logging is on). */
  get wantsTexts(): boolean {
    return this.logging.queries !== 'off';
  }

  /** New settings from a config reload (applies from the next request on). */
  configure(logging: QueryLogSettings): void {
    this.logging = logging;
    this.pendingTexts = null;
  }

  /** Session mode: a Query or Parse text seen going out, for the log line of its request. */
  noteText(text: string): void {
    (this.pendingTexts ??= []).push(text);
  }

  /** A request that a ReadyForQuery will answer went to the server. */
  sent(route: TrafficRoute, reason: string, texts: readonly string[] | null, startsTransaction: boolean): void {
    const now = performance.now();
    this.lastRequestAt = now;
    if (startsTransaction || this.transactionStart < 0) this.transactionStart = now;
    // One entry per request in flight whatever the setting, so a reload that turns logging on or
    // off never pairs a query with another's text.
    const recorded = this.logging.queries === 'off' ? NOT_RECORDED : (texts ?? this.pendingTexts);
    this.pendingTexts = null;
    if (this.headSentAt < 0) {
      this.headSentAt = now;
      this.headRoute = route;
      this.headTexts = recorded;
    } else {
      this.sentAt.push(now);
      this.routes.push(route);
      this.texts.push(recorded);
    }
    this.traffic.request(route, reason);
  }

  /** The ReadyForQuery of the oldest request in flight arrived with `status`. */
  answered(status: TransactionStatus, server: { readonly target: { host: string; port: number } } | null): void {
    const started = this.headSentAt;
    if (started < 0) return;
    const route = this.headRoute;
    const texts = this.headTexts;
    this.nextHead();
    const now = performance.now();
    const seconds = (now - started) / 1000;
    this.traffic.query(route, seconds);
    if (status === 'I' && this.transactionStart >= 0) {
      this.traffic.transaction(route, (now - this.transactionStart) / 1000);
      // A request pipelined behind this one started the next transaction when it was sent.
      this.transactionStart = this.headSentAt;
    }
    if (this.logging.queries !== 'off' && texts !== NOT_RECORDED) this.logQuery(texts ?? null, seconds * 1000, route, server === null ? null : `${server.target.host}:${server.target.port}`);
  }

  /** The oldest request's answer was swallowed: it will be sent again (and measured then). */
  dropped(): void {
    if (this.headSentAt >= 0) this.nextHead();
  }

  /** The server was lost: what was in flight is answered with errors, not measured. */
  clear(): void {
    this.headSentAt = -1;
    this.headTexts = null;
    this.sentAt.clear();
    this.routes.clear();
    this.texts.clear();
    this.transactionStart = -1;
  }

  /** The oldest request in flight is done with: the next one, if any, takes its place. */
  private nextHead(): void {
    if (this.sentAt.length === 0) {
      this.headSentAt = -1;
      this.headTexts = null;
      return;
    }
    this.headSentAt = this.sentAt.shift()!;
    this.headRoute = this.routes.shift()!;
    this.headTexts = this.texts.shift() ?? null;
  }

  /** A server connection was at hand at once: a wait of zero, and no clock read. */
  noWait(): void {
    this.traffic.wait(0);
  }

  waitStarted(): void {
    this.waitingSince = performance.now();
  }

  waitEnded(): void {
    if (this.waitingSince < 0) return;
    this.traffic.wait((performance.now() - this.waitingSince) / 1000);
    this.waitingSince = -1;
  }

  /** An ErrorResponse the server sent on to the client. */
  serverError(payload: Buffer): void {
    this.traffic.error(summarizeError(payload).code);
  }

  /** An ErrorResponse the ambassador itself sent to the client. */
  error(sqlstate: string): void {
    this.traffic.error(sqlstate);
  }

  private logQuery(texts: readonly string[] | null, ms: number, route: TrafficRoute, host: string | null): void {
    if (this.logging.queries === 'slow' && ms < this.logging.slowQueryThresholdMs) return;
    const sql = texts === null || texts.length === 0 ? null : redactPasswords(texts.join(';\n'));
    const traceparent = sql === null ? undefined : traceparentOf(sql);
    const fields: Record<string, unknown> = { durationMs: Math.round(ms * 1000) / 1000, route, host };
    if (sql === null) fields.query = '(no SQL text: a function call or a portal bound earlier)';
    else if (sql.length > MAX_LOGGED_TEXT) {
      fields.query = sql.slice(0, MAX_LOGGED_TEXT);
      fields.queryLength = sql.length;
    } else fields.query = sql;
    if (traceparent !== undefined) fields.traceparent = traceparent;
    this.log.info(fields, this.logging.queries === 'slow' ? 'slow query' : 'query');
  }
}

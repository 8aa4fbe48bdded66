// The SQL admin console (database `ambassador`): a PgBouncer-style console spoken over the
// PostgreSQL protocol. The session hands it every client message after login (Terminate
// excepted) and writes back what it returns. Pure: no sockets; the outside world is reached
// through a ConsoleSource supplied by the composition root.
//
// Invariants:
// - Simple Query only. The text may hold several commands; they run in order and the first
//   failure ends the text (as Postgres does), then one ReadyForQuery 'I'.
// - Extended protocol is refused the way Postgres refuses a failed extended batch: one
//   ErrorResponse at the first message, the rest ignored until Sync, which gets ReadyForQuery.
// - handle() never throws and never sends a stack trace; calls are answered in call order even
//   when the caller does not wait for one to finish before sending the next.

import { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import { redactPasswords } from '../frontend/request-meter.ts';
import { encodeErrorResponse, encodeReadyForQuery } from '../protocol/backend.ts';
import { FrontendType } from '../protocol/frontend.ts';
import { frameMessage, PayloadReader } from '../protocol/writer.ts';
import { commandName, ConsoleError, parseCommands, runCommand, type ConsoleCommand } from './console-commands.ts';

/** Everything the console shows or does, supplied by the composition root (app.ts). */
export interface ConsoleSource {
  version: string;
  pools(): PoolRow[];
  stats(): StatsRow[];
  clients(): ClientRow[];
  servers(): ServerRow[];
  hosts(): HostRow[];
  config(): ConfigRow[];
  /** How a statement would be routed now. */
  route(sql: string): RouteRow | Promise<RouteRow>;
  reload(): Promise<{ ok: true; summary: string } | { ok: false; error: string }>;
  /** Holds new transactions; resolves when leased servers are back (or a bound passed). */
  pause(): Promise<{ drained: boolean; active: number }>;
  /** False when not paused. */
  resume(): boolean;
}

export interface PoolRow {
  database: string;
  user: string;
  cl_active: number;
  cl_waiting: number;
  /** Client cancel connections whose cancel is on its way to this pool's server. */
  cl_active_cancel_req: number;
  /** Client cancel connections waiting to be forwarded (never: a cancel goes at once or is dropped). */
  cl_waiting_cancel_req: number;
  sv_active: number;
  /** Leased server connections a cancel is on its way to. */
  sv_active_cancel: number;
  /** Server connections whose return to the pool waits for a cancel to land. */
  sv_being_canceled: number;
  sv_idle: number;
  sv_used: number;
  sv_tested: number;
  sv_login: number;
  maxwait: number;
  maxwait_us: number;
  pool_mode: string;
}

export interface StatsRow {
  database: string;
  total_xact_count: number;
  total_query_count: number;
  total_received: number;
  total_sent: number;
  total_xact_time: number;
  total_query_time: number;
  total_wait_time: number;
  avg_xact_count: number;
  avg_query_count: number;
  avg_recv: number;
  avg_sent: number;
  avg_xact_time: number;
  avg_query_time: number;
  avg_wait_time: number;
}

/** The columns SHOW CLIENTS and SHOW SERVERS share (PgBouncer's), in their order. */
interface ConnectionRow {
  user: string;
  database: string;
  state: string;
  addr: string;
  port: number;
  local_addr: string;
  local_port: number;
  connect_time: string;
  request_time: string;
}

export interface ClientRow extends ConnectionRow {
  type: 'C';
  wait: number;
  wait_us: number;
  tls: string;
  application_name: string;
  id: number;
  pinned: string;
  server: string;
}

export interface ServerRow extends ConnectionRow {
  type: 'S';
  remote_pid: number;
  tls: string;
  role: string;
}

export interface HostRow {
  host: string;
  port: number;
  role: string;
  configured_role: string;
  up: boolean;
  breaker: string;
  failures: number;
  lag_bytes: number | null;
  lag_seconds: number | null;
  replay_lsn: string | null;
  active_connections: number;
  weight: number;
  last_error: string | null;
}

export interface ConfigRow {
  key: string;
  value: string;
  default: string;
  changeable: 'yes' | 'no';
}

export interface RouteRow {
  route: 'primary' | 'replica';
  reason: string;
  classification: string;
  host: string | null;
  host_reason: string;
}

const EXTENDED_TYPES: ReadonlySet<number> = new Set([
  FrontendType.Parse,
  FrontendType.Bind,
  FrontendType.Describe,
  FrontendType.Execute,
  FrontendType.Close,
  FrontendType.Flush,
]);
const EMPTY_QUERY_RESPONSE = 0x49; // I
const LOGGED_SQL_CHARS = 200;

const EXTENDED_REFUSED = { code: '0A000', message: 'the admin console speaks the simple query protocol only (psql, or -M simple)' };

export class AdminConsole {
  /** An extended-protocol message was refused; everything up to Sync is ignored. */
  private awaitingSync = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly source: ConsoleSource,
    private readonly log: Logger,
  ) {}

  /**
   * One client message (type byte and payload, as framed). Returns the bytes to send back (may be
   * several messages concatenated, always ending with ReadyForQuery when a reply is due), or null
   * when nothing is due yet (extended-protocol messages before Sync). Never throws for bad input:
   * bad input is an ErrorResponse.
   */
  handle(type: number, payload: Buffer): Promise<Buffer | null> {
    const reply = this.queue.then(() => this.handleInOrder(type, payload));
    this.queue = reply;
    return reply;
  }

  private async handleInOrder(type: number, payload: Buffer): Promise<Buffer | null> {
    try {
      return await this.dispatch(type, payload);
    } catch (err) {
      // Only a bug gets here: commands' own failures are answered inside query().
      this.log.error({ err: messageOf(err) }, 'admin console failed to answer a message');
      return Buffer.concat([error('XX000', `admin console internal error: ${messageOf(err)}`), encodeReadyForQuery('I')]);
    }
  }

  private async dispatch(type: number, payload: Buffer): Promise<Buffer | null> {
    if (type === FrontendType.Sync) {
      const refusal = this.awaitingSync ? [] : [this.refuseExtended()];
      this.awaitingSync = false;
      return Buffer.concat([...refusal, encodeReadyForQuery('I')]);
    }
    // After a refused extended message Postgres discards everything until Sync; so do we.
    if (this.awaitingSync) return null;
    if (EXTENDED_TYPES.has(type)) {
      this.awaitingSync = true;
      return this.refuseExtended();
    }
    if (type === FrontendType.Query) return this.query(payload);
    const shown = type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}'` : `0x${type.toString(16)}`;
    this.log.warn({ messageType: shown }, 'admin console got an unexpected message type');
    return Buffer.concat([
      error('08P01', `unexpected message type ${shown} on the admin console`, 'The admin console answers Query messages only.'),
      encodeReadyForQuery('I'),
    ]);
  }

  private refuseExtended(): Buffer {
    this.log.info({ command: 'extended-protocol' }, 'admin console refused the extended query protocol');
    return error(EXTENDED_REFUSED.code, EXTENDED_REFUSED.message, 'Connect with psql, or pgbench -M simple, or a driver in simple-query mode.');
  }

  private async query(payload: Buffer): Promise<Buffer> {
    const text = queryText(payload);
    if (text === undefined) {
      return Buffer.concat([error('08P01', 'invalid Query message: the query text is not NUL-terminated'), encodeReadyForQuery('I')]);
    }
    const commands = parseCommands(text);
    if (commands.length === 0) return Buffer.concat([frameMessage(EMPTY_QUERY_RESPONSE, Buffer.alloc(0)), encodeReadyForQuery('I')]);
    const out: Buffer[] = [];
    for (const command of commands) {
      const { messages, failed } = await this.run(command);
      out.push(...messages);
      if (failed) break;
    }
    out.push(encodeReadyForQuery('I'));
    return Buffer.concat(out);
  }

  private async run(command: ConsoleCommand): Promise<{ messages: Buffer[]; failed: boolean }> {
    this.logCommand(command);
    try {
      return { messages: await runCommand(command, this.source), failed: false };
    } catch (err) {
      if (err instanceof ConsoleError) {
        if (command.kind !== 'unknown') this.log.warn({ command: commandName(command), sqlstate: err.sqlstate, reason: err.message }, 'admin console command failed');
        return { messages: [error(err.sqlstate, err.message, err.hint)], failed: true };
      }
      this.log.error({ command: commandName(command), reason: messageOf(err) }, 'admin console command failed');
      return { messages: [error('XX000', messageOf(err))], failed: true };
    }
  }

  private logCommand(command: ConsoleCommand): void {
    const name = commandName(command);
    // Redacted before it is cut short, so a cut cannot hide a PASSWORD literal from the redaction.
    if (command.kind === 'route') this.log.info({ command: name, sql: redactPasswords(command.sql).slice(0, LOGGED_SQL_CHARS) }, 'admin console command');
    // Only the first word of an unknown statement: it may carry a password (ALTER ROLE ... PASSWORD).
    else if (command.kind === 'unknown') this.log.info({ command: name, word: command.word }, 'admin console command');
    else this.log.info({ command: name }, 'admin console command');
  }
}

function queryText(payload: Buffer): string | undefined {
  try {
    return new PayloadReader(payload).cstring();
  } catch {
    return undefined;
  }
}

function error(code: string, message: string, hint?: string): Buffer {
  return encodeErrorResponse({ severity: 'ERROR', code, message, hint });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

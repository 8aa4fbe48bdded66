// The admin console's commands: parsing a Simple Query text into commands, and running one command
// against the ConsoleSource to produce its protocol messages. The protocol layer (console.ts)
// decides what to do with the messages and when to stop; nothing here touches sockets.
//
// Invariants:
// - SHOW columns come from one table per row type, in the row interface's field order, and the
//   `satisfies Record<keyof Row, true>` check makes a missing or extra column a compile error.
//   PgBouncer's column names come first on purpose: exporters written for PgBouncer carry over.
// - Every value is sent as text: numbers in decimal, `up` as true/false, null as SQL NULL.
// - An expected failure is a ConsoleError (SQLSTATE, message, hint); anything else a command
//   throws is reported by the caller as XX000 with its message, never its stack.

import {
  encodeCommandComplete,
  encodeDataRow,
  encodeNoticeResponse,
  encodeTextRowDescription,
} from '../protocol/backend.ts';
import { isSignificant, splitStatements, type Token } from '../router/sql-lexer.ts';
import type { ClientRow, ConfigRow, ConsoleSource, HostRow, PoolRow, RouteRow, ServerRow, StatsRow } from './console.ts';

export const SHOW_TARGETS = ['pools', 'stats', 'clients', 'servers', 'hosts', 'config', 'version', 'help'] as const;
export type ShowTarget = (typeof SHOW_TARGETS)[number];

export type ConsoleCommand =
  | { kind: 'show'; target: ShowTarget }
  | { kind: 'route'; sql: string }
  | { kind: 'reload' }
  | { kind: 'pause' }
  | { kind: 'resume' }
  | { kind: 'unknown'; text: string; word: string };

/** A failure the console reports as an ErrorResponse with this SQLSTATE. */
export class ConsoleError extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'ConsoleError';
  }
}

const HELP: ReadonlyArray<readonly [string, string]> = [
  ['SHOW POOLS', 'clients and server connections per database and user'],
  ['SHOW STATS', 'transaction, query and byte counters per database'],
  ['SHOW CLIENTS', 'one row per client connection'],
  ['SHOW SERVERS', 'one row per server connection'],
  ['SHOW HOSTS', 'upstream hosts: role, health, breaker, replication lag'],
  ['SHOW CONFIG', 'settings in effect, their defaults, and whether RELOAD can change them'],
  ['SHOW ROUTE <sql>', 'how <sql> would be routed now (primary or replica, and why)'],
  ['SHOW VERSION', 'the pg-ambassador version'],
  ['SHOW HELP', 'this list'],
  ['RELOAD', 're-read the configuration file, credentials and certificates'],
  ['PAUSE', 'hold new transactions and wait for server connections in use to come back'],
  ['RESUME', 'let held transactions run again after PAUSE'],
];

export const COMMANDS_HINT = `Commands: ${HELP.map(([name]) => name).join(', ')}.`;

// ---- parsing ----

/**
 * The commands of one Simple Query text, in order. Statements split at top-level `;` (quotes and
 * comments respected); SHOW ROUTE takes everything after ROUTE to the end of the text as its SQL,
 * so it is always the last command. An empty list means an empty query.
 */
export function parseCommands(text: string): ConsoleCommand[] {
  const commands: ConsoleCommand[] = [];
  for (const statement of splitStatements(text)) {
    const tokens = statement.tokens.filter(isSignificant);
    const route = routeKeyword(tokens);
    if (route) {
      commands.push({ kind: 'route', sql: stripOneSemicolon(text.slice(route.end)) });
      break;
    }
    commands.push(parseStatement(tokens, statement.text.trim()));
  }
  return commands;
}

function routeKeyword(tokens: Token[]): Token | undefined {
  const [show, route] = tokens;
  return show?.kind === 'identifier' && show.value === 'show' && route?.kind === 'identifier' && route.value === 'route' ? route : undefined;
}

function parseStatement(tokens: Token[], text: string): ConsoleCommand {
  const words = tokens.map((token) => (token.kind === 'identifier' ? token.value! : `\0${token.text}`));
  const [first, second] = words;
  if (words.length === 2 && first === 'show' && (SHOW_TARGETS as readonly string[]).includes(second!)) {
    return { kind: 'show', target: second as ShowTarget };
  }
  if (words.length === 1 && (first === 'reload' || first === 'pause' || first === 'resume')) return { kind: first };
  return { kind: 'unknown', text, word: (tokens[0]?.text ?? '').slice(0, 64) };
}

function stripOneSemicolon(sql: string): string {
  const trimmed = sql.trim();
  return (trimmed.endsWith(';') ? trimmed.slice(0, -1) : trimmed).trim();
}

/** The command's name for logs: `SHOW POOLS`, `RELOAD`, `unknown`. */
export function commandName(command: ConsoleCommand): string {
  switch (command.kind) {
    case 'show':
      return `SHOW ${command.target.toUpperCase()}`;
    case 'route':
      return 'SHOW ROUTE';
    case 'unknown':
      return 'unknown';
    default:
      return command.kind.toUpperCase();
  }
}

// ---- SHOW column tables (field order of the row interfaces) ----

const columns = <Row>(table: Record<keyof Row & string, true>): ReadonlyArray<keyof Row & string> =>
  Object.keys(table) as Array<keyof Row & string>;

export const POOL_COLUMNS = columns<PoolRow>({
  database: true, user: true, cl_active: true, cl_waiting: true, cl_active_cancel_req: true, cl_waiting_cancel_req: true,
  sv_active: true, sv_active_cancel: true, sv_being_canceled: true, sv_idle: true, sv_used: true, sv_tested: true,
  sv_login: true, maxwait: true, maxwait_us: true, pool_mode: true,
});
export const STATS_COLUMNS = columns<StatsRow>({
  database: true, total_xact_count: true, total_query_count: true, total_received: true, total_sent: true,
  total_xact_time: true, total_query_time: true, total_wait_time: true, avg_xact_count: true, avg_query_count: true,
  avg_recv: true, avg_sent: true, avg_xact_time: true, avg_query_time: true, avg_wait_time: true,
});
export const CLIENT_COLUMNS = columns<ClientRow>({
  type: true, user: true, database: true, state: true, addr: true, port: true, local_addr: true, local_port: true,
  connect_time: true, request_time: true, wait: true, wait_us: true, tls: true, application_name: true, id: true,
  pinned: true, server: true,
});
export const SERVER_COLUMNS = columns<ServerRow>({
  type: true, user: true, database: true, state: true, addr: true, port: true, local_addr: true, local_port: true,
  connect_time: true, request_time: true, remote_pid: true, tls: true, role: true,
});
export const HOST_COLUMNS = columns<HostRow>({
  host: true, port: true, role: true, configured_role: true, up: true, breaker: true, failures: true, lag_bytes: true,
  lag_seconds: true, replay_lsn: true, active_connections: true, weight: true, last_error: true,
});
export const CONFIG_COLUMNS = columns<ConfigRow>({ key: true, value: true, default: true, changeable: true });
export const ROUTE_COLUMNS = columns<RouteRow>({ route: true, reason: true, classification: true, host: true, host_reason: true });

/** A row value as the text the client sees; null stays SQL NULL. */
export function formatValue(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return Number.isInteger(value) && Math.abs(value) >= 1e21 ? BigInt(value).toString() : String(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return String(value);
}

function showRows<Row>(names: ReadonlyArray<keyof Row & string>, rows: readonly Row[]): Buffer[] {
  return [
    encodeTextRowDescription(names),
    ...rows.map((row) => encodeDataRow(names.map((name) => formatValue(row[name])))),
    encodeCommandComplete('SHOW'),
  ];
}

// ---- running ----

/** Runs one parsed command; throws ConsoleError for expected failures. */
export async function runCommand(command: ConsoleCommand, source: ConsoleSource): Promise<Buffer[]> {
  switch (command.kind) {
    case 'show':
      return show(command.target, source);
    case 'route':
      if (command.sql === '') throw new ConsoleError('42601', 'SHOW ROUTE needs a statement to route', 'Write SHOW ROUTE <sql>, e.g. SHOW ROUTE SELECT 1.');
      return showRows(ROUTE_COLUMNS, [await source.route(command.sql)]);
    case 'reload':
      return reload(source);
    case 'pause':
      return pause(source);
    case 'resume':
      if (!source.resume()) throw new ConsoleError('55000', 'not paused', 'RESUME undoes PAUSE; nothing is paused now.');
      return [encodeCommandComplete('RESUME')];
    case 'unknown':
      throw new ConsoleError('42601', `unknown admin console command: "${command.text}"`, `${COMMANDS_HINT} SHOW HELP describes them.`);
  }
}

function show(target: ShowTarget, source: ConsoleSource): Buffer[] {
  switch (target) {
    case 'pools':
      return showRows(POOL_COLUMNS, source.pools());
    case 'stats':
      return showRows(STATS_COLUMNS, source.stats());
    case 'clients':
      return showRows(CLIENT_COLUMNS, source.clients());
    case 'servers':
      return showRows(SERVER_COLUMNS, source.servers());
    case 'hosts':
      return showRows(HOST_COLUMNS, source.hosts());
    case 'config':
      return showRows(CONFIG_COLUMNS, source.config());
    case 'version':
      return showRows(['version'], [{ version: `pg-ambassador ${source.version}` }]);
    case 'help':
      return showRows(['command'], HELP.map(([name, description]) => ({ command: `${name}: ${description}` })));
  }
}

async function reload(source: ConsoleSource): Promise<Buffer[]> {
  const result = await source.reload();
  if (!result.ok) throw new ConsoleError('F0000', result.error, 'The previous configuration stays in effect.');
  return [encodeNoticeResponse({ severity: 'NOTICE', code: '00000', message: result.summary }), encodeCommandComplete('RELOAD')];
}

async function pause(source: ConsoleSource): Promise<Buffer[]> {
  const { drained, active } = await source.pause();
  if (drained) return [encodeCommandComplete('PAUSE')];
  const connections = active === 1 ? '1 server connection is' : `${active} server connections are`;
  const notice = encodeNoticeResponse({
    severity: 'WARNING',
    code: '01000',
    message: `paused, but ${connections} still in use`,
    hint: 'New transactions are held until RESUME; the ones still running finish on their own.',
  });
  return [notice, encodeCommandComplete('PAUSE')];
}

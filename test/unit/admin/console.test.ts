// The SQL admin console's protocol and command layer, over a fake ConsoleSource. Replies are read
// back with node-postgres's own parser (pg-protocol), so what is asserted is what a client sees.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { AdminConsole, type ConsoleSource, type HostRow, type PoolRow } from '../../../src/admin/console.ts';
import { FrontendType } from '../../../src/protocol/frontend.ts';

interface NoticeFields {
  severity: string;
  code: string;
  message: string;
  hint: string | undefined;
  where: string | undefined;
}

type Reply =
  | { kind: 'T'; columns: string[]; oids: number[] }
  | { kind: 'D'; values: Array<string | null> }
  | { kind: 'C'; tag: string }
  | ({ kind: 'E' } & NoticeFields)
  | ({ kind: 'N' } & NoticeFields)
  | { kind: 'I' }
  | { kind: 'Z'; status: string };

/** Splits the reply into frames (checking the lengths add up), then reads each with pg-protocol. */
function decode(bytes: Buffer): Reply[] {
  let frames = 0;
  let pos = 0;
  while (pos < bytes.length) {
    assert.ok(pos + 5 <= bytes.length, 'truncated message header');
    pos += 1 + bytes.readInt32BE(pos + 1);
    frames++;
  }
  assert.equal(pos, bytes.length, 'frames end exactly at the end of the reply');
  const got: Reply[] = [];
  new Parser().parse(bytes, (message: BackendMessage) => got.push(simplify(message)));
  assert.equal(got.length, frames);
  return got;
}

function simplify(message: BackendMessage): Reply {
  const m = message as unknown as Record<string, unknown>;
  switch (message.name) {
    case 'rowDescription': {
      const fields = m.fields as Array<{ name: string; dataTypeID: number }>;
      return { kind: 'T', columns: fields.map((f) => f.name), oids: fields.map((f) => f.dataTypeID) };
    }
    case 'dataRow':
      return { kind: 'D', values: m.fields as Array<string | null> };
    case 'commandComplete':
      return { kind: 'C', tag: m.text as string };
    case 'error':
    case 'notice': {
      const fields: NoticeFields = {
        severity: m.severity as string,
        code: m.code as string,
        message: m.message as string,
        hint: m.hint as string | undefined,
        where: m.where as string | undefined,
      };
      return message.name === 'error' ? { kind: 'E', ...fields } : { kind: 'N', ...fields };
    }
    case 'emptyQuery':
      return { kind: 'I' };
    case 'readyForQuery':
      return { kind: 'Z', status: m.status as string };
    default:
      throw new Error(`unexpected message ${message.name}`);
  }
}

const POOL: PoolRow = {
  database: 'app', user: 'alice', cl_active: 3, cl_waiting: 1, cl_active_cancel_req: 7, cl_waiting_cancel_req: 0, sv_active: 2,
  sv_active_cancel: 5, sv_being_canceled: 6, sv_idle: 4, sv_used: 0, sv_tested: 0, sv_login: 1, maxwait: 2, maxwait_us: 500000,
  pool_mode: 'transaction',
};
const HOSTS: HostRow[] = [
  { host: 'db1', port: 5432, role: 'primary', configured_role: 'auto', up: true, breaker: 'closed', failures: 0, lag_bytes: null, lag_seconds: null, replay_lsn: null, active_connections: 5, weight: 1, last_error: null },
  { host: 'db2', port: 5433, role: 'replica', configured_role: 'replica', up: false, breaker: 'open', failures: 3, lag_bytes: 8192, lag_seconds: 1.5, replay_lsn: '0/3000060', active_connections: 0, weight: 2, last_error: 'connection refused' },
];

interface FakeSource extends ConsoleSource {
  calls: string[];
}

function fakeSource(overrides: Partial<ConsoleSource> = {}): FakeSource {
  const calls: string[] = [];
  const source: FakeSource = {
    calls,
    version: '0.1.0',
    pools: () => (calls.push('pools'), [POOL]),
    stats: () => (calls.push('stats'), [{
      database: 'app', total_xact_count: 10, total_query_count: 20, total_received: 3000, total_sent: 4000, total_xact_time: 5,
      total_query_time: 6, total_wait_time: 7, avg_xact_count: 1, avg_query_count: 2, avg_recv: 300, avg_sent: 400,
      avg_xact_time: 50, avg_query_time: 60, avg_wait_time: 70,
    }]),
    clients: () => (calls.push('clients'), [{
      type: 'C', user: 'alice', database: 'app', state: 'active', addr: '127.0.0.1', port: 50000, local_addr: '127.0.0.1',
      local_port: 6432, connect_time: '2024-01-01 00:00:00 UTC', request_time: '2024-01-01 00:00:01 UTC', wait: 0, wait_us: 250,
      tls: '', application_name: 'psql', id: 7, pinned: 'prepared', server: 'db1:5432#3',
    }]),
    servers: () => (calls.push('servers'), [{
      type: 'S', user: 'alice', database: 'app', state: 'idle', addr: '10.0.0.1', port: 5432, local_addr: '10.0.0.9',
      local_port: 40000, connect_time: '2024-01-01 00:00:00 UTC', request_time: '2024-01-01 00:00:02 UTC', remote_pid: 4242,
      tls: 'TLSv1.3', role: 'primary',
    }]),
    hosts: () => (calls.push('hosts'), HOSTS),
    config: () => (calls.push('config'), [
      { key: 'pool.size', value: '20', default: '10', changeable: 'yes' },
      { key: 'listen.port', value: '5432', default: '5432', changeable: 'no' },
    ]),
    route: (sql) => (calls.push(`route:${sql}`), { route: 'replica', reason: 'read-only', classification: 'select', host: null, host_reason: 'no replica up' }),
    reload: async () => (calls.push('reload'), { ok: true, summary: 'pool.size 10 -> 20' }),
    pause: async () => (calls.push('pause'), { drained: true, active: 0 }),
    resume: () => (calls.push('resume'), true),
    ...overrides,
  };
  return source;
}

function queryPayload(text: string): Buffer {
  return Buffer.from(`${text}\0`, 'utf8');
}

async function ask(text: string, source: ConsoleSource = fakeSource()): Promise<Reply[]> {
  const reply = await new AdminConsole(source, pino({ level: 'silent' })).handle(FrontendType.Query, queryPayload(text));
  assert.ok(reply, 'a Query always gets a reply');
  return decode(reply);
}

const kinds = (replies: Reply[]): string => replies.map((r) => r.kind).join('');
function only<K extends Reply['kind']>(replies: Reply[], kind: K): Extract<Reply, { kind: K }> {
  const found = replies.filter((r) => r.kind === kind);
  assert.equal(found.length, 1, `one ${kind} message in ${kinds(replies)}`);
  return found[0] as Extract<Reply, { kind: K }>;
}

// ---- SHOW ----

test('SHOW POOLS answers with PgBouncer 1.18\'s column names in order, all text, and the row values', async () => {
  const replies = await ask('SHOW POOLS');
  assert.equal(kinds(replies), 'TDCZ');
  assert.deepEqual(replies[0], {
    kind: 'T',
    columns: [
      'database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel',
      'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode',
    ],
    oids: Array(16).fill(25),
  });
  assert.deepEqual(replies[1], { kind: 'D', values: ['app', 'alice', '3', '1', '7', '0', '2', '5', '6', '4', '0', '0', '1', '2', '500000', 'transaction'] });
  assert.deepEqual(replies[2], { kind: 'C', tag: 'SHOW' });
  assert.deepEqual(replies[3], { kind: 'Z', status: 'I' });
});

test('SHOW STATS columns and values', async () => {
  const replies = await ask('SHOW STATS');
  assert.equal(kinds(replies), 'TDCZ');
  assert.deepEqual(only(replies, 'T').columns, [
    'database', 'total_xact_count', 'total_query_count', 'total_received', 'total_sent', 'total_xact_time', 'total_query_time',
    'total_wait_time', 'avg_xact_count', 'avg_query_count', 'avg_recv', 'avg_sent', 'avg_xact_time', 'avg_query_time', 'avg_wait_time',
  ]);
  assert.deepEqual(only(replies, 'D').values, ['app', '10', '20', '3000', '4000', '5', '6', '7', '1', '2', '300', '400', '50', '60', '70']);
});

test('SHOW CLIENTS columns and values', async () => {
  const replies = await ask('SHOW CLIENTS');
  assert.deepEqual(only(replies, 'T').columns, [
    'type', 'user', 'database', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'wait',
    'wait_us', 'tls', 'application_name', 'id', 'pinned', 'server',
  ]);
  assert.deepEqual(only(replies, 'D').values, [
    'C', 'alice', 'app', 'active', '127.0.0.1', '50000', '127.0.0.1', '6432', '2024-01-01 00:00:00 UTC', '2024-01-01 00:00:01 UTC',
    '0', '250', '', 'psql', '7', 'prepared', 'db1:5432#3',
  ]);
});

test('SHOW SERVERS columns and values', async () => {
  const replies = await ask('SHOW SERVERS');
  assert.deepEqual(only(replies, 'T').columns, [
    'type', 'user', 'database', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'remote_pid', 'tls', 'role',
  ]);
  assert.deepEqual(only(replies, 'D').values, [
    'S', 'alice', 'app', 'idle', '10.0.0.1', '5432', '10.0.0.9', '40000', '2024-01-01 00:00:00 UTC', '2024-01-01 00:00:02 UTC', '4242', 'TLSv1.3', 'primary',
  ]);
});

test('SHOW HOSTS sends null as SQL NULL, up as true/false, fractions in decimal', async () => {
  const replies = await ask('SHOW HOSTS');
  assert.equal(kinds(replies), 'TDDCZ');
  assert.deepEqual(only(replies, 'T').columns, [
    'host', 'port', 'role', 'configured_role', 'up', 'breaker', 'failures', 'lag_bytes', 'lag_seconds', 'replay_lsn',
    'active_connections', 'weight', 'last_error',
  ]);
  assert.deepEqual(replies[1], { kind: 'D', values: ['db1', '5432', 'primary', 'auto', 'true', 'closed', '0', null, null, null, '5', '1', null] });
  assert.deepEqual(replies[2], {
    kind: 'D',
    values: ['db2', '5433', 'replica', 'replica', 'false', 'open', '3', '8192', '1.5', '0/3000060', '0', '2', 'connection refused'],
  });
});

test('SHOW CONFIG columns, changeable as yes/no', async () => {
  const replies = await ask('SHOW CONFIG');
  assert.equal(kinds(replies), 'TDDCZ');
  assert.deepEqual(only(replies, 'T').columns, ['key', 'value', 'default', 'changeable']);
  assert.deepEqual(replies[1], { kind: 'D', values: ['pool.size', '20', '10', 'yes'] });
  assert.deepEqual(replies[2], { kind: 'D', values: ['listen.port', '5432', '5432', 'no'] });
});

test('a SHOW with no rows still describes its columns', async () => {
  const replies = await ask('SHOW POOLS', fakeSource({ pools: () => [] }));
  assert.equal(kinds(replies), 'TCZ');
  assert.equal(only(replies, 'T').columns.length, 16);
});

test('large counters are sent in plain decimal, never exponent notation', async () => {
  const replies = await ask('SHOW POOLS', fakeSource({ pools: () => [{ ...POOL, maxwait_us: 2 ** 53, cl_active: 1e21 }] }));
  const values = only(replies, 'D').values;
  assert.equal(values[2], '1000000000000000000000');
  assert.equal(values[14], '9007199254740992');
});

test('SHOW VERSION', async () => {
  const replies = await ask('SHOW VERSION');
  assert.deepEqual(replies, [
    { kind: 'T', columns: ['version'], oids: [25] },
    { kind: 'D', values: ['pg-ambassador 0.1.0'] },
    { kind: 'C', tag: 'SHOW' },
    { kind: 'Z', status: 'I' },
  ]);
});

test('SHOW HELP lists every command', async () => {
  const replies = await ask('SHOW HELP');
  assert.deepEqual(only(replies, 'T').columns, ['command']);
  const lines = replies.filter((r) => r.kind === 'D').map((r) => (r as { values: string[] }).values[0]!);
  for (const command of ['SHOW POOLS', 'SHOW STATS', 'SHOW CLIENTS', 'SHOW SERVERS', 'SHOW HOSTS', 'SHOW CONFIG', 'SHOW ROUTE', 'SHOW VERSION', 'SHOW HELP', 'RELOAD', 'PAUSE', 'RESUME']) {
    assert.ok(lines.some((line) => line.startsWith(command)), `${command} in SHOW HELP`);
  }
});

test('commands are case-insensitive and take extra whitespace and a trailing semicolon', async () => {
  for (const text of ['show pools', 'Show\tPools ;', '  SHOW\n  POOLS;  ', 'sHoW pOoLs;']) {
    const replies = await ask(text);
    assert.equal(kinds(replies), 'TDCZ', text);
  }
});

test('several commands in one text are answered in order with one ReadyForQuery at the end', async () => {
  const source = fakeSource();
  const replies = await ask('SHOW VERSION; show pools ;SHOW CONFIG;', source);
  assert.equal(kinds(replies), 'TDCTDCTDDCZ');
  assert.deepEqual((replies[1] as { values: string[] }).values, ['pg-ambassador 0.1.0']);
  assert.equal((replies[3] as { columns: string[] }).columns[0], 'database');
  assert.equal((replies[6] as { columns: string[] }).columns[0], 'key');
  assert.deepEqual(source.calls, ['pools', 'config']);
});

// ---- SHOW ROUTE ----

test('SHOW ROUTE takes the rest of the text as SQL, semicolons included, one trailing one stripped', async () => {
  const source = fakeSource();
  const replies = await ask("SHOW POOLS; show route SELECT ';' ; UPDATE t SET a = 1;  ", source);
  assert.equal(kinds(replies), 'TDCTDCZ');
  assert.deepEqual(source.calls, ['pools', "route:SELECT ';' ; UPDATE t SET a = 1"]);
  assert.deepEqual(replies[3], { kind: 'T', columns: ['route', 'reason', 'classification', 'host', 'host_reason'], oids: [25, 25, 25, 25, 25] });
  assert.deepEqual(replies[4], { kind: 'D', values: ['replica', 'read-only', 'select', null, 'no replica up'] });
  assert.deepEqual(replies[5], { kind: 'C', tag: 'SHOW' });
});

test('SHOW ROUTE strips only one trailing semicolon', async () => {
  const source = fakeSource();
  await ask('SHOW ROUTE select 1;;', source);
  assert.deepEqual(source.calls, ['route:select 1;']);
});

test('SHOW ROUTE with no SQL is a 42601 error', async () => {
  for (const text of ['SHOW ROUTE', 'show route ;', 'SHOW ROUTE   ']) {
    const source = fakeSource();
    const replies = await ask(text, source);
    assert.equal(kinds(replies), 'EZ', text);
    assert.equal(only(replies, 'E').code, '42601');
    assert.match(only(replies, 'E').message, /SHOW ROUTE/);
    assert.deepEqual(source.calls, [], text);
  }
});

test('a route() that throws becomes XX000 with its message and no stack', async () => {
  const replies = await ask('SHOW ROUTE select 1', fakeSource({ route: () => { throw new Error('router not ready'); } }));
  assert.equal(kinds(replies), 'EZ');
  const error = only(replies, 'E');
  assert.equal(error.code, 'XX000');
  assert.equal(error.message, 'router not ready');
  assert.equal(error.where, undefined);
  assert.doesNotMatch(JSON.stringify(error), /\n\s+at /);
});

// ---- unknown commands ----

test('an unknown statement is 42601 with a hint listing the commands, and later commands do not run', async () => {
  const source = fakeSource();
  const replies = await ask('SHOW POOLS; SELECT 1; SHOW CONFIG; RELOAD', source);
  assert.equal(kinds(replies), 'TDCEZ');
  const error = only(replies, 'E');
  assert.equal(error.severity, 'ERROR');
  assert.equal(error.code, '42601');
  assert.equal(error.message, 'unknown admin console command: "SELECT 1"');
  assert.match(error.hint ?? '', /SHOW POOLS.*SHOW ROUTE.*RELOAD.*PAUSE.*RESUME/);
  assert.deepEqual(source.calls, ['pools']);
});

test('near misses of real commands are unknown commands too', async () => {
  for (const text of ['SHOW', 'SHOW POOL', 'SHOW POOLS extra', 'RELOAD now', 'PAUSE app', 'show "pools"']) {
    const source = fakeSource();
    const replies = await ask(text, source);
    assert.equal(kinds(replies), 'EZ', text);
    assert.equal(only(replies, 'E').code, '42601', text);
    assert.deepEqual(source.calls, [], text);
  }
});

test('a semicolon inside quotes does not split an unknown statement', async () => {
  const replies = await ask("SELECT 'a;b'; SHOW POOLS");
  assert.equal(kinds(replies), 'EZ');
  assert.equal(only(replies, 'E').message, `unknown admin console command: "SELECT 'a;b'"`);
});

// ---- RELOAD, PAUSE, RESUME ----

test('RELOAD success sends the summary as a notice before the RELOAD tag', async () => {
  const replies = await ask('RELOAD');
  assert.equal(kinds(replies), 'NCZ');
  assert.equal(only(replies, 'N').message, 'pool.size 10 -> 20');
  assert.deepEqual(replies[1], { kind: 'C', tag: 'RELOAD' });
});

test('RELOAD failure is F0000 with the error as message, and stops the text', async () => {
  const source = fakeSource({ reload: async () => ({ ok: false, error: 'pool.size: expected a number' }) });
  const replies = await ask('reload; show pools', source);
  assert.equal(kinds(replies), 'EZ');
  const error = only(replies, 'E');
  assert.equal(error.code, 'F0000');
  assert.equal(error.message, 'pool.size: expected a number');
  assert.deepEqual(source.calls, []);
});

test('a rejected reload or pause becomes XX000 with the message and no stack', async () => {
  for (const [text, overrides] of [
    ['RELOAD', { reload: async () => { throw new Error('disk on fire'); } }],
    ['PAUSE', { pause: async () => { throw new Error('disk on fire'); } }],
  ] as const) {
    const replies = await ask(text, fakeSource(overrides));
    assert.equal(kinds(replies), 'EZ', text);
    const error = only(replies, 'E');
    assert.equal(error.code, 'XX000', text);
    assert.equal(error.message, 'disk on fire', text);
    assert.equal(error.where, undefined);
    assert.doesNotMatch(JSON.stringify(error), /\n\s+at |console\.test/);
  }
});

test('PAUSE that drained answers PAUSE with no notice', async () => {
  const source = fakeSource();
  const replies = await ask('PAUSE', source);
  assert.deepEqual(replies, [{ kind: 'C', tag: 'PAUSE' }, { kind: 'Z', status: 'I' }]);
  assert.deepEqual(source.calls, ['pause']);
});

test('PAUSE that did not drain says how many server connections are still in use', async () => {
  const replies = await ask('PAUSE', fakeSource({ pause: async () => ({ drained: false, active: 3 }) }));
  assert.equal(kinds(replies), 'NCZ');
  assert.match(only(replies, 'N').message, /\b3 server connections\b.*in use/);
  assert.deepEqual(replies[1], { kind: 'C', tag: 'PAUSE' });
});

test('RESUME answers RESUME; RESUME when not paused is 55000 "not paused"', async () => {
  assert.deepEqual(await ask('RESUME'), [{ kind: 'C', tag: 'RESUME' }, { kind: 'Z', status: 'I' }]);
  const replies = await ask('RESUME', fakeSource({ resume: () => false }));
  assert.equal(kinds(replies), 'EZ');
  assert.equal(only(replies, 'E').code, '55000');
  assert.equal(only(replies, 'E').message, 'not paused');
});

// ---- empty and malformed input ----

test('an empty query gets EmptyQueryResponse and ReadyForQuery', async () => {
  for (const text of ['', '   ', ';', ' ; ;', '-- just a comment']) {
    const source = fakeSource();
    assert.deepEqual(await ask(text, source), [{ kind: 'I' }, { kind: 'Z', status: 'I' }], JSON.stringify(text));
    assert.deepEqual(source.calls, []);
  }
});

test('a Query payload without its NUL terminator is 08P01, not a throw', async () => {
  const reply = await new AdminConsole(fakeSource(), pino({ level: 'silent' })).handle(FrontendType.Query, Buffer.from('SHOW POOLS'));
  const replies = decode(reply!);
  assert.equal(kinds(replies), 'EZ');
  assert.equal(only(replies, 'E').code, '08P01');
});

test('an unexpected message type is 08P01 then ReadyForQuery', async () => {
  const reply = await new AdminConsole(fakeSource(), pino({ level: 'silent' })).handle(FrontendType.FunctionCall, Buffer.alloc(8));
  const replies = decode(reply!);
  assert.equal(kinds(replies), 'EZ');
  assert.equal(only(replies, 'E').code, '08P01');
  assert.match(only(replies, 'E').message, /'F'/);
});

// ---- extended protocol ----

test('extended protocol: one 0A000 at the first message, the rest ignored, ReadyForQuery at Sync', async () => {
  const source = fakeSource();
  const adminConsole = new AdminConsole(source, pino({ level: 'silent' }));
  for (let round = 0; round < 2; round++) {
    const first = await adminConsole.handle(FrontendType.Parse, Buffer.from('\0SHOW POOLS\0\0\0', 'latin1'));
    const firstReplies = decode(first!);
    assert.equal(kinds(firstReplies), 'E', `round ${round}`);
    assert.equal(only(firstReplies, 'E').code, '0A000');
    assert.equal(only(firstReplies, 'E').message, 'the admin console speaks the simple query protocol only (psql, or -M simple)');
    for (const type of [FrontendType.Bind, FrontendType.Describe, FrontendType.Execute, FrontendType.Close, FrontendType.Flush, FrontendType.Parse]) {
      assert.equal(await adminConsole.handle(type, Buffer.alloc(4)), null);
    }
    assert.deepEqual(decode((await adminConsole.handle(FrontendType.Sync, Buffer.alloc(0)))!), [{ kind: 'Z', status: 'I' }]);
  }
  assert.deepEqual(source.calls, []);
});

test('a Sync with no extended message before it gets the 0A000 error first', async () => {
  const adminConsole = new AdminConsole(fakeSource(), pino({ level: 'silent' }));
  const replies = decode((await adminConsole.handle(FrontendType.Sync, Buffer.alloc(0)))!);
  assert.equal(kinds(replies), 'EZ');
  assert.equal(only(replies, 'E').code, '0A000');
});

test('after a refused extended message everything up to Sync is ignored, as Postgres does, then Query works again', async () => {
  const source = fakeSource();
  const adminConsole = new AdminConsole(source, pino({ level: 'silent' }));
  await adminConsole.handle(FrontendType.Bind, Buffer.alloc(4));
  assert.equal(await adminConsole.handle(FrontendType.Query, queryPayload('SHOW POOLS')), null);
  assert.equal(await adminConsole.handle(FrontendType.FunctionCall, Buffer.alloc(4)), null);
  assert.deepEqual(source.calls, []);
  await adminConsole.handle(FrontendType.Sync, Buffer.alloc(0));
  assert.equal(kinds(decode((await adminConsole.handle(FrontendType.Query, queryPayload('SHOW POOLS')))!)), 'TDCZ');
});

// ---- ordering and logging ----

test('replies resolve in call order even when the caller does not wait between messages', async () => {
  let release!: () => void;
  const source = fakeSource({ pause: () => new Promise((resolve) => (release = () => resolve({ drained: true, active: 0 }))) });
  const adminConsole = new AdminConsole(source, pino({ level: 'silent' }));
  const order: string[] = [];
  const paused = adminConsole.handle(FrontendType.Query, queryPayload('PAUSE')).then(() => order.push('pause'));
  const parsed = adminConsole.handle(FrontendType.Parse, Buffer.alloc(4)).then(() => order.push('parse'));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(order, []);
  release();
  await Promise.all([paused, parsed]);
  assert.deepEqual(order, ['pause', 'parse']);
});

test('each command is logged at info with its command word; SHOW ROUTE SQL at most 200 chars; unknown text not logged', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const adminConsole = new AdminConsole(fakeSource(), log);
  const longSql = `SELECT ${'x'.repeat(500)}`;
  await adminConsole.handle(FrontendType.Query, queryPayload(`show pools; Reload; SHOW ROUTE ${longSql}`));
  await adminConsole.handle(FrontendType.Query, queryPayload("ALTER ROLE bob PASSWORD 'hunter2'"));
  const commands = lines.filter((line) => line.level === 30 && line.command !== undefined);
  assert.deepEqual(commands.map((line) => line.command), ['SHOW POOLS', 'RELOAD', 'SHOW ROUTE', 'unknown']);
  assert.equal(commands[2]!.sql, longSql.slice(0, 200));
  assert.equal(commands[3]!.word, 'ALTER');
  assert.doesNotMatch(JSON.stringify(lines), /hunter2/);
});

test('SHOW ROUTE of a statement with a PASSWORD literal logs it redacted, also when the literal runs past the 200 logged chars', async () => {
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const adminConsole = new AdminConsole(fakeSource(), log);
  await adminConsole.handle(FrontendType.Query, queryPayload("SHOW ROUTE ALTER ROLE bob PASSWORD 'hunter2-route'"));
  const padded = `ALTER ROLE ${'b'.repeat(180)} PASSWORD '${'hunter3-'.repeat(10)}'`;
  await adminConsole.handle(FrontendType.Query, queryPayload(`SHOW ROUTE ${padded}`));
  const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.command === 'SHOW ROUTE');
  assert.equal(logged.length, 2);
  assert.equal(logged[0]!.sql, "ALTER ROLE bob PASSWORD '[redacted]'");
  assert.doesNotMatch(lines.join('\n'), /hunter2|hunter3/);
});

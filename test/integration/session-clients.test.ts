// Real clients through a session-mode ambassador, compared with the same work done directly
// against the primary: node-postgres (simple, extended, named statements), postgres.js
// (pipelining, COPY streams, cancel), psql and pgbench.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import postgres from 'postgres';
import { CLIENT_PASSWORD, startTestAmbassador, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { loginScram, type WireMessage } from '../support/raw-client.ts';
import { getTopology, type Topology } from '../support/topology.ts';
import { encodeQuery } from '../../src/protocol/frontend.ts';

const run = promisify(execFile);
let topology: Topology;
let amb: TestAmbassador;

before(async () => {
  topology = await getTopology();
  amb = await startTestAmbassador(topology, { logging: { level: 'info' } });
  const admin = new pg.Client(direct());
  await admin.connect();
  await admin.query('drop table if exists copy_src; create table copy_src (id int primary key, name text, amount numeric, at timestamptz)');
  await admin.query(
    `insert into copy_src select g, 'name ' || g || E'\\t"quoted"\\n', g * 1.5, timestamptz '2020-01-01' + g * interval '1 minute' from generate_series(1, 100000) g`,
  );
  await admin.end();
});
after(async () => {
  await amb?.stop();
});

function direct(extra: Record<string, unknown> = {}): pg.ClientConfig {
  return { host: '127.0.0.1', port: topology.primary.port, user: 'app', password: topology.users.app.password, database: 'app', ...extra };
}

async function withClient<T>(config: pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Runs the same function directly and through the ambassador; returns both results. */
async function bothWays<T>(fn: (client: pg.Client) => Promise<T>): Promise<{ direct: T; proxied: T }> {
  return { direct: await withClient(direct(), fn), proxied: await withClient(viaAmbassador(amb.port) as pg.ClientConfig, fn) };
}

function psqlEnv(port: number, password: string): NodeJS.ProcessEnv {
  return { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'app', PGPASSWORD: password, PGDATABASE: 'app', PGSSLMODE: 'disable' };
}

describe('node-postgres', () => {
  test('simple, extended and named prepared statements give the same results as direct', async () => {
    const work = async (c: pg.Client) => {
      const out: unknown[] = [];
      out.push((await c.query('select 1 as a, $$x$$ as b, null::int as c, array[1,2] as d')).rows);
      out.push((await c.query('select $1::text || $2::text as joined, $3::int * 2 as doubled', ['a', 'b', 21])).rows);
      for (let i = 0; i < 20; i++) out.push((await c.query({ name: 'by-id', text: 'select id, name from copy_src where id = $1', values: [i + 1] })).rows);
      out.push((await c.query({ text: 'select id from copy_src order by id limit 3', rowMode: 'array' })).rows);
      return out;
    };
    const { direct: d, proxied: p } = await bothWays(work);
    assert.deepEqual(p, d);
    assert.equal((p[2] as Array<{ id: number }>)[0]!.id, 1);
  });

  test('an error mid-transaction, then ROLLBACK, leaves the session usable', async () => {
    await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (c) => {
      await c.query('begin');
      await c.query('create temp table t_err (x int)');
      await assert.rejects(c.query('select 1/0'), (err: { code?: string }) => err.code === '22012');
      await assert.rejects(c.query('select 1'), (err: { code?: string }) => err.code === '25P02');
      await c.query('rollback');
      assert.equal((await c.query('select 2 as n')).rows[0].n, 2);
      await assert.rejects(c.query('select * from t_err'), (err: { code?: string }) => err.code === '42P01');
    });
  });

  test('NOTICEs and an empty query reach the client', async () => {
    await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (c) => {
      const notices: string[] = [];
      c.on('notice', (n) => notices.push(n.message ?? ''));
      await c.query(`do $$ begin raise notice 'hello from the server %', 42; end $$`);
      assert.deepEqual(notices, ['hello from the server 42']);
      const empty = await c.query('');
      assert.equal(empty.command, null);
      assert.equal(empty.rows.length, 0);
    });
  });

  test('LISTEN/NOTIFY delivers notifications sent from another connection', async () => {
    await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (listener) => {
      const received = new Promise<pg.Notification>((resolve) => listener.on('notification', resolve));
      await listener.query('listen ambassador_test');
      await withClient(direct(), (sender) => sender.query(`notify ambassador_test, 'payload-123'`));
      const n = await received;
      assert.equal(n.channel, 'ambassador_test');
      assert.equal(n.payload, 'payload-123');
    });
  });

  test('a 50 MB result arrives whole and identical', async () => {
    const sql = `select g, repeat(md5(g::text), 50) as blob from generate_series(1, 32000) g`;
    const { direct: d, proxied: p } = await bothWays(async (c) => {
      const rows = (await c.query({ text: sql, rowMode: 'array' })).rows as Array<[number, string]>;
      const hash = createHash('sha256');
      let bytes = 0;
      for (const [g, blob] of rows) {
        hash.update(`${g}:${blob}`);
        bytes += blob.length;
      }
      return { count: rows.length, bytes, digest: hash.digest('hex') };
    });
    assert.ok(p.bytes >= 50_000_000, `result was ${p.bytes} bytes`);
    assert.deepEqual(p, d);
  });

  test('cancel of pg_sleep from node-postgres stops the query with 57014', async () => {
    const config = viaAmbassador(amb.port) as pg.ClientConfig;
    await withClient(config, async (c) => {
      const started = Date.now();
      const sleeping = c.query('select pg_sleep(30)');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const canceller = new pg.Client(config);
      (canceller as unknown as { cancel(client: pg.Client, query: unknown): void }).cancel(c, (c as unknown as { activeQuery: unknown }).activeQuery);
      await assert.rejects(sleeping, (err: { code?: string }) => err.code === '57014');
      assert.ok(Date.now() - started < 10_000);
      assert.equal((await c.query('select 3 as n')).rows[0].n, 3);
    });
  });
});

describe('postgres.js', () => {
  const connect = () => postgres({ host: '127.0.0.1', port: amb.port, user: 'app', password: CLIENT_PASSWORD, database: 'app', max: 1, onnotice: () => {} });

  test('pipelined queries on one connection return in order', async () => {
    const sql = connect();
    try {
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => sql`select ${i}::int as i, ${'v' + i}::text as v`));
      results.forEach((rows, i) => assert.deepEqual([...rows], [{ i, v: `v${i}` }]));
    } finally {
      await sql.end();
    }
  });

  test('cancel of pg_sleep from postgres.js', async () => {
    const sql = connect();
    try {
      const query = sql`select pg_sleep(30)`;
      const outcome = query.then(
        () => 'completed',
        (err: { code?: string }) => err.code,
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      query.cancel();
      assert.equal(await outcome, '57014');
      assert.deepEqual([...(await sql`select 1 as one`)], [{ one: 1 }]);
    } finally {
      await sql.end();
    }
  });

  test('COPY TO STDOUT of 100k rows is byte-identical to direct', async () => {
    const copyOut = async (port: number, password: string) => {
      const sql = postgres({ host: '127.0.0.1', port, user: 'app', password, database: 'app', max: 1 });
      try {
        const stream = await sql`copy copy_src to stdout`.readable();
        const hash = createHash('sha256');
        let bytes = 0;
        for await (const chunk of stream) {
          hash.update(chunk as Buffer);
          bytes += (chunk as Buffer).length;
        }
        return { bytes, digest: hash.digest('hex') };
      } finally {
        await sql.end();
      }
    };
    const d = await copyOut(topology.primary.port, topology.users.app.password);
    const p = await copyOut(amb.port, CLIENT_PASSWORD);
    assert.ok(d.bytes > 1_000_000);
    assert.deepEqual(p, d);
  });

  test('COPY FROM STDIN of 100k rows stores exactly what was sent', async () => {
    const sql = connect();
    try {
      await sql`drop table if exists copy_dst`;
      await sql`create table copy_dst (like copy_src)`;
      const source = postgres({ host: '127.0.0.1', port: topology.primary.port, user: 'app', password: topology.users.app.password, database: 'app', max: 1 });
      try {
        const reader = await source`copy copy_src to stdout`.readable();
        const writer = await sql`copy copy_dst from stdin`.writable();
        await new Promise<void>((resolve, reject) => {
          reader.pipe(writer).on('finish', () => resolve()).on('error', reject);
          reader.on('error', reject);
        });
      } finally {
        await source.end();
      }
      const [diff] = await sql`select count(*)::int as n from (select * from copy_src except all select * from copy_dst) x`;
      const [count] = await sql`select count(*)::int as n from copy_dst`;
      assert.equal(count!.n, 100000);
      assert.equal(diff!.n, 0);
    } finally {
      await sql.end();
    }
  });

  test('an error raised mid-COPY reaches the client while it is still sending', async () => {
    // At the wire level: postgres.js itself reports a COPY error only after the client ends the
    // stream, so what matters is that the ErrorResponse is on the client's socket at once.
    const sql = connect();
    await sql`drop table if exists copy_err`;
    await sql`create table copy_err (id int primary key)`;
    await sql.end();
    const client = await loginScram(amb.port, 'app', CLIENT_PASSWORD);
    try {
      client.write(encodeQuery('copy copy_err from stdin'));
      await client.readUntil('G');
      // A malformed value fails at parse time (duplicate keys would wait for a batch flush).
      client.write(copyData('1\nnot-a-number\n'));
      let sent = 0;
      let error: WireMessage | undefined;
      for (; sent < 200 && error === undefined; sent++) {
        client.write(copyData(`${sent + 10}\n`));
        error = await client.nextMessage(25).catch(() => undefined);
      }
      assert.ok(error, 'no ErrorResponse while the client was still sending CopyData');
      assert.equal(error.type, 'E');
      assert.equal(error.error?.code, '22P02');
      assert.ok(sent < 200);
      client.write(Buffer.from([0x63, 0, 0, 0, 4])); // CopyDone, ignored by the server now
      const rest = await client.readUntil('Z');
      assert.equal(rest.at(-1)?.payload.toString(), 'I');
    } finally {
      client.destroy();
    }
  });
});

function copyData(text: string): Buffer {
  const body = Buffer.from(text);
  const out = Buffer.alloc(5 + body.length);
  out[0] = 0x64;
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

describe('psql and pgbench', () => {
  test('psql runs a script with the same output as direct', async () => {
    const args = ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', 'select 1 as a', '-c', '\\echo done'];
    args.push('-c', "select string_agg(name, ',' order by id) from copy_src where id < 20", '-c', 'begin; select count(*) from copy_src; commit;');
    const d = await run('psql', args, { env: psqlEnv(topology.primary.port, topology.users.app.password) });
    const p = await run('psql', args, { env: psqlEnv(amb.port, CLIENT_PASSWORD) });
    assert.equal(p.stdout, d.stdout);
    assert.match(p.stdout, /100000/);
  });

  test('psql \\copy in both directions through the ambassador', async () => {
    const env = psqlEnv(amb.port, CLIENT_PASSWORD);
    const out = await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-c', '\\copy (select * from copy_src order by id) to stdout'], { env, maxBuffer: 64 << 20 });
    const directOut = await run('psql', ['-X', '-c', '\\copy (select * from copy_src order by id) to stdout'], {
      env: psqlEnv(topology.primary.port, topology.users.app.password),
      maxBuffer: 64 << 20,
    });
    assert.equal(createHash('sha256').update(out.stdout).digest('hex'), createHash('sha256').update(directOut.stdout).digest('hex'));
  });

  for (const mode of ['simple', 'extended', 'prepared'] as const) {
    test(`pgbench -M ${mode} completes with zero failed transactions`, async () => {
      const env = psqlEnv(amb.port, CLIENT_PASSWORD);
      await run('pgbench', ['-i', '-q', '-s', '1', '--foreign-keys'], { env });
      const { stdout } = await run('pgbench', ['-M', mode, '-c', '4', '-j', '2', '-t', '200', '--no-vacuum'], { env });
      assert.match(stdout, /number of transactions actually processed: 800\/800/);
      assert.match(stdout, /number of failed transactions: 0 /);
      const check = await run('psql', ['-X', '-A', '-t', '-c', 'select count(*) from pgbench_history'], {
        env: psqlEnv(topology.primary.port, topology.users.app.password),
      });
      assert.equal(Number(check.stdout.trim()), 800);
    });
  }
});

// `pg-ambassador demo` end to end, as a user runs it: the real CLI in a child process, a real
// cluster behind it, real signals. Each child gets its own TMPDIR, so every file and postgres
// process it makes can be found (and must be gone) afterwards without touching anyone else's.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { eventually, freePort, occupyPort } from '../support/topology.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const START_TIMEOUT_MS = 120_000;

interface DemoProcess {
  child: ChildProcess;
  tmpDir: string;
  output(): string;
  /** Resolves with the first match of `pattern` in the output; rejects on exit or deadline. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Exit code (null when killed by a signal); rejects after the deadline. */
  exitCode(timeoutMs?: number): Promise<number | null>;
}

const started: DemoProcess[] = [];

after(() => {
  for (const demo of started) {
    if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGKILL');
    // The cluster's watchdog reaps the servers of a SIGKILLed demo; anything still named after
    // our TMPDIR is ours to kill.
    for (const pid of pidsMentioning(demo.tmpDir)) killQuietly(pid);
    rmSync(demo.tmpDir, { recursive: true, force: true });
  }
});

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Pids whose command line mentions `text` (postmasters run as `postgres -D <dir>`). */
function pidsMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function startDemo(port: number): DemoProcess {
  const tmpDir = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-demo-test-'));
  chmodSync(tmpDir, 0o755); // the servers run as the postgres OS user when we are root
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'demo', '--port', String(port)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TMPDIR: tmpDir },
  });
  let output = '';
  let closed = false; // exited and its output fully read
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.once('close', () => (closed = true));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const demo: DemoProcess = {
    child,
    tmpDir,
    output: () => output,
    waitFor: async (pattern, timeoutMs = START_TIMEOUT_MS) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(output);
        if (match) return match;
        if (closed) throw new Error(`demo exited with ${child.exitCode} before printing ${pattern}; output:\n${output}`);
        if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms; output:\n${output}`);
        await sleep(50);
      }
    },
    exitCode: async (timeoutMs = 30_000) => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`demo still running after ${timeoutMs} ms; output:\n${output}`)), timeoutMs);
      });
      try {
        return await Promise.race([exited, deadline]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
  started.push(demo);
  return demo;
}

interface Banner {
  url: string;
  pids: number[];
  baseDir: string;
}

async function waitForBanner(demo: DemoProcess, port: number): Promise<Banner> {
  const [, psqlPort] = await demo.waitFor(/connect with: PGPASSWORD=app psql "host=127\.0\.0\.1 port=(\d+) user=app dbname=app"/);
  assert.equal(Number(psqlPort), port, 'the psql line names the requested port');
  const [, url] = await demo.waitFor(/DATABASE_URL=(\S+)/);
  const [, baseDir] = await demo.waitFor(/files\s+(\S+) \(removed on exit\)/);
  const pids = [...demo.output().matchAll(/^\s+(?:primary|replica\d+)\s+127\.0\.0\.1:\d+ pid (\d+)/gm)].map((m) => Number(m[1]));
  assert.equal(pids.length, 2, `primary and replica pids are printed; output:\n${demo.output()}`);
  return { url: url!, pids, baseDir: baseDir! };
}

function collectErrors(client: pg.Client): Array<Error & { code?: string }> {
  const errors: Array<Error & { code?: string }> = [];
  client.on('error', (error) => errors.push(error));
  return errors;
}

/** The ambassador's 57P01 (Postgres' own "unexpected postmaster exit" is 57P01 too). */
const isAdminShutdown = (e: Error & { code?: string }): boolean => e.code === '57P01' && /administrator command/.test(e.message);

async function assertCleanedUp(demo: DemoProcess, banner?: Banner): Promise<void> {
  for (const pid of banner?.pids ?? []) assert.equal(isAlive(pid), false, `postgres pid ${pid} still running`);
  if (banner) assert.equal(existsSync(banner.baseDir), false, `${banner.baseDir} still exists`);
  // The detached watchdog may need a poll interval (500 ms) to notice the directory is gone.
  await eventually(async () => (pidsMentioning(demo.tmpDir).length === 0 ? true : undefined), {
    timeoutMs: 5000,
    what: `no process mentioning ${demo.tmpDir}`,
  });
  // (tsx keeps its compile cache in TMPDIR too; only the cluster's directories count.)
  const leftovers = readdirSync(demo.tmpDir).filter((name) => name.startsWith('pg-ambassador-'));
  assert.deepEqual(leftovers, [], `the demo left cluster files in ${demo.tmpDir}`);
}

test('demo splits reads and writes through the ambassador and cleans up on SIGINT', { timeout: 180_000 }, async () => {
  const port = await freePort();
  const demo = startDemo(port);
  const banner = await waitForBanner(demo, port);
  const client = new pg.Client({ connectionString: banner.url, connectionTimeoutMillis: 10_000 });
  const errors = collectErrors(client);
  try {
    await client.connect();
    const read = await client.query('select pg_is_in_recovery() as in_recovery');
    assert.equal(read.rows[0].in_recovery, true, 'a read is served by the replica');
    const write = await client.query('create temp table demo_probe as select pg_is_in_recovery() as in_recovery');
    assert.equal(write.rowCount, 1);
    const { rows } = await client.query('select in_recovery from demo_probe');
    assert.equal(rows[0].in_recovery, false, 'a write is served by the primary (and the session stays there while its temp table lives)');

    demo.child.kill('SIGINT');
    assert.equal(await demo.exitCode(), 0, `exit code; output:\n${demo.output()}`);
    await eventually(async () => (errors.some(isAdminShutdown) ? true : undefined), {
      timeoutMs: 5000,
      what: `57P01 on the idle client (errors: ${errors.map((e) => e.message).join('; ')})`,
    });
    await assertCleanedUp(demo, banner);
  } finally {
    await client.end().catch(() => {});
  }
});

test('demo shutdown lets a transaction in flight finish before stopping the cluster', { timeout: 180_000 }, async () => {
  const port = await freePort();
  const demo = startDemo(port);
  const banner = await waitForBanner(demo, port);
  const client = new pg.Client({ connectionString: banner.url, connectionTimeoutMillis: 10_000 });
  const errors = collectErrors(client);
  try {
    await client.connect();
    await client.query('begin');
    await client.query('create table demo_graceful (id int)');
    demo.child.kill('SIGINT');
    await demo.waitFor(/SIGINT: stopping/, 10_000);
    // The drain has begun: the transaction must still be able to finish on a live primary.
    await client.query('insert into demo_graceful values (1)');
    await client.query('commit');
    assert.equal(await demo.exitCode(), 0, `exit code; output:\n${demo.output()}`);
    await eventually(async () => (errors.some(isAdminShutdown) ? true : undefined), {
      timeoutMs: 5000,
      what: `57P01 after the commit (errors: ${errors.map((e) => e.message).join('; ')})`,
    });
    await assertCleanedUp(demo, banner);
  } finally {
    await client.end().catch(() => {});
  }
});

test('demo on a port already in use exits 1, names the port, suggests --port, starts no postgres', { timeout: 60_000 }, async () => {
  const blocker = await occupyPort();
  const port = blocker.port;
  try {
    const demo = startDemo(port);
    assert.equal(await demo.exitCode(), 1, `exit code; output:\n${demo.output()}`);
    const output = demo.output();
    assert.match(output, new RegExp(`port ${port}\\b.*already in use`));
    assert.match(output, /npm run demo -- --port \d+/);
    await assertCleanedUp(demo);
  } finally {
    await blocker.close();
  }
});

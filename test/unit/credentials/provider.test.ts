// The dependency-free providers against the real outside world: environment objects, files in a
// temp dir (a Kubernetes-style ..data symlink swap included), and real child processes for exec
// (plain and JSON output, timeouts, failures whose errors never carry stdout).

import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { EnvPasswordProvider, ExecPasswordProvider, FilePasswordProvider, parseExecOutput } from '../../../src/credentials/provider.ts';

const LOGIN = { host: 'db.example', port: 6432, user: 'app' };
const dir = mkdtempSync(path.join(os.tmpdir(), 'pa-providers-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The watch keeps no event-loop reference of its own; this timer does, and bounds the wait. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

test('env: read at each fetch; unset or empty is a clear error naming the variable', async () => {
  const env: NodeJS.ProcessEnv = { DB_PASS: 'first' };
  const provider = new EnvPasswordProvider('DB_PASS', env);
  assert.equal((await provider.fetch()).password, 'first');
  env.DB_PASS = 'second';
  assert.equal((await provider.fetch()).password, 'second');
  env.DB_PASS = '';
  await assert.rejects(provider.fetch(), /DB_PASS/);
});

test('file: one trailing newline dropped; empty and missing files are errors that name the file', async () => {
  const file = path.join(dir, 'password');
  writeFileSync(file, 'pa ss\n\n');
  const provider = new FilePasswordProvider(file);
  assert.equal((await provider.fetch()).password, 'pa ss\n', 'only one newline is dropped');
  writeFileSync(file, '');
  await assert.rejects(provider.fetch(), new RegExp(`${file} is empty`));
  await assert.rejects(new FilePasswordProvider(path.join(dir, 'missing')).fetch(), /missing: ENOENT/);
});

test('file: a Kubernetes secret swap (..data symlink re-pointed) is seen by the watch', async () => {
  const mount = path.join(dir, 'mount');
  mkdirSync(path.join(mount, '..v1'), { recursive: true });
  writeFileSync(path.join(mount, '..v1', 'password'), 'one');
  symlinkSync('..v1', path.join(mount, '..data'));
  symlinkSync('..data/password', path.join(mount, 'password'));
  const provider = new FilePasswordProvider(path.join(mount, 'password'), 60_000);
  let notified = 0;
  let wake: () => void = () => {};
  const changed = new Promise<void>((resolve) => (wake = resolve));
  const stop = provider.watch(() => {
    notified++;
    wake();
  });
  try {
    assert.equal((await provider.fetch()).password, 'one');
    // What the kubelet does: write a new timestamped dir, then atomically rename a new symlink over ..data.
    mkdirSync(path.join(mount, '..v2'));
    writeFileSync(path.join(mount, '..v2', 'password'), 'two');
    symlinkSync('..v2', path.join(mount, '..data_tmp'));
    renameSync(path.join(mount, '..data_tmp'), path.join(mount, '..data'));
    await within(changed, 5000); // the poll is a minute away: this is the directory watch
    assert.equal(notified, 1);
    assert.equal((await provider.fetch()).password, 'two');
  } finally {
    stop();
  }
});

test('exec: a shell command line prints the password and learns the login from the environment', async () => {
  const provider = new ExecPasswordProvider({ command: 'printf "%s-%s-%s\\n" "$PG_AMBASSADOR_USER" "$PG_AMBASSADOR_HOST" "$PG_AMBASSADOR_PORT"', timeoutMs: 5000 });
  assert.deepEqual(await provider.fetch(LOGIN), { password: 'app-db.example-6432' });
});

test('exec: an argument vector runs without a shell; JSON output carries an expiry', async () => {
  const script = 'process.stdout.write(JSON.stringify({ password: "tok", expiresAt: "2030-01-02T03:04:05Z" }))';
  const provider = new ExecPasswordProvider({ command: [process.execPath, '-e', script], timeoutMs: 5000 });
  const secret = await provider.fetch(LOGIN);
  assert.equal(secret.password, 'tok');
  assert.equal(secret.expiresAt?.toISOString(), '2030-01-02T03:04:05.000Z');
});

test('exec: failures name the command and exit status, include stderr, and never stdout', async () => {
  const failing = new ExecPasswordProvider({ command: 'echo leaked-secret; echo "vault: permission denied" >&2; exit 3', timeoutMs: 5000 });
  const err = await failing.fetch(LOGIN).catch((e: Error) => e);
  assert.ok(err instanceof Error);
  assert.match(err.message, /credentials command echo exited with status 3: vault: permission denied/);
  assert.ok(!err.message.includes('leaked-secret'));
  await assert.rejects(new ExecPasswordProvider({ command: 'sleep 5', timeoutMs: 100 }).fetch(LOGIN), /did not finish within 100 ms/);
  await assert.rejects(new ExecPasswordProvider({ command: ['/nonexistent/tool'], timeoutMs: 1000 }).fetch(LOGIN), /could not be started: ENOENT/);
  await assert.rejects(new ExecPasswordProvider({ command: 'head -c 70000 /dev/zero | tr "\\0" x', timeoutMs: 5000 }).fetch(LOGIN), /printed more than/);
});

test('exec output: password lines, JSON with ISO or epoch expiry, and what is refused', () => {
  assert.deepEqual(parseExecOutput('secret\n', 'cmd'), { password: 'secret' });
  assert.deepEqual(parseExecOutput(' spaced \r\n', 'cmd'), { password: ' spaced ' });
  assert.equal(parseExecOutput('{"password":"p","expiresAt":1900000000}', 'cmd').expiresAt?.getTime(), 1_900_000_000_000);
  assert.equal(parseExecOutput('{"password":"p","expiresAt":"1900000000"}', 'cmd').expiresAt?.getTime(), 1_900_000_000_000);
  assert.deepEqual(parseExecOutput('{"password":"p","expiresAt":null}', 'cmd'), { password: 'p' });
  assert.throws(() => parseExecOutput('', 'cmd'), /printed nothing/);
  assert.throws(() => parseExecOutput('a\nb\n', 'cmd'), /more than one line/);
  assert.throws(() => parseExecOutput('{"password":', 'cmd'), /does not parse/);
  assert.throws(() => parseExecOutput('{"token":"x"}', 'cmd'), /without a non-empty "password"/);
  assert.throws(() => parseExecOutput('{"password":"p","expiresAt":"soon"}', 'cmd'), /neither an ISO 8601 time/);
  // No error quotes the output it refused.
  try {
    parseExecOutput('{"password":"hunter2","expiresAt":"soon"}', 'cmd');
  } catch (err) {
    assert.ok(!(err as Error).message.includes('hunter2'));
  }
});

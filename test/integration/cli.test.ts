// The command line as users meet it: `node --import tsx src/main.ts ...` as a child process.
// check-config (redaction, file:line errors), route, --version, --help, exit code 3 on a port in use,
// and a start from environment variables alone that serves queries from the shared primary (and
// never loads the SQL parser, which only read/write splitting and route use: it costs ~8 MB).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import YAML from 'yaml';
import { freePort, getTopology, occupyPort } from '../support/topology.ts';
import { ENVIRONMENT_VARIABLES } from '../../src/config/index.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(ROOT, 'src/main.ts');
const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-cli-test-'));
const children = new Set<ChildProcess>();

after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** Variables the config reads from the environment: none of ours may leak into a child. */
const CONFIG_VARIABLES = new Set([...ENVIRONMENT_VARIABLES, 'PG_AMBASSADOR_CONFIG']);

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!CONFIG_VARIABLES.has(key)) env[key] = value;
  return { ...env, ...extra };
}

interface Cli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Exit code; rejects (and the child is killed in after()) past the deadline. */
  exited(timeoutMs?: number): Promise<number | null>;
}

function startCli(args: string[], env: NodeJS.ProcessEnv = cleanEnv(), preload: string[] = []): Cli {
  const child = spawn(process.execPath, ['--import', 'tsx', ...preload, MAIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited: (timeoutMs = 30_000) => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`pg-ambassador ${args.join(' ')} still running after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`)), timeoutMs);
      });
      return Promise.race([exit, deadline]).finally(() => clearTimeout(timer));
    },
  };
}

async function runCli(args: string[], env?: NodeJS.ProcessEnv, preload?: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = startCli(args, env, preload);
  const code = await cli.exited();
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

/**
 * Node arguments that make a child write the URL of every module it loads to a file (a module
 * resolve hook), and that file's lines.
 */
function moduleLog(name: string): { preload: string[]; loaded: () => string[] } {
  const log = path.join(dir, `${name}.modules`);
  const hooks = `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, resolved.url + '\\n');
  return resolved;
}`;
  const register = writeConfig(`${name}.register.mjs`, `import { register } from 'node:module';\nregister(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});\n`);
  writeFileSync(log, '');
  return { preload: ['--import', register], loaded: () => readFileSync(log, 'utf8').split('\n').filter(Boolean) };
}

const PARSER_MODULE = /\/node_modules\/libpg-query\//;

function writeConfig(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

test('check-config prints the effective config with every secret redacted and exits 0', async () => {
  const clientPassword = 'client-pw-7d1e0c9b';
  const upstreamPassword = 'upstream-pw-52aa81f3';
  const file = writeConfig(
    'valid.yaml',
    [
      'clientAuth:',
      '  method: scram-sha-256',
      '  users:',
      `    - { name: app, password: ${clientPassword} }`,
      'upstream:',
      '  hosts:',
      '    - { host: 127.0.0.1, port: 5433, role: primary }',
      '  credentials:',
      '    type: password',
      '    password: ${CLI_TEST_UPSTREAM_PASSWORD}',
      'pool: { size: 7 }',
      '',
    ].join('\n'),
  );
  const { code, stdout, stderr } = await runCli(['check-config', '--config', file], cleanEnv({ CLI_TEST_UPSTREAM_PASSWORD: upstreamPassword }));
  assert.equal(code, 0, stderr);
  for (const secret of [clientPassword, upstreamPassword]) {
    assert.ok(!stdout.includes(secret), `stdout shows a secret:\n${stdout}`);
    assert.ok(!stderr.includes(secret), `stderr shows a secret:\n${stderr}`);
  }
  const printed = YAML.parse(stdout) as {
    clientAuth: { users: Array<{ name: string; password: string }> };
    upstream: { credentials: { type: string; password: string }; hosts: Array<{ port: number }> };
    pool: { size: number; mode: string };
  };
  assert.equal(printed.clientAuth.users[0]!.name, 'app');
  assert.equal(printed.clientAuth.users[0]!.password, '[redacted]');
  assert.equal(printed.upstream.credentials.type, 'password');
  assert.equal(printed.upstream.credentials.password, '[redacted]');
  assert.equal(printed.upstream.hosts[0]!.port, 5433, 'values from the file');
  assert.equal(printed.pool.size, 7);
  assert.equal(printed.pool.mode, 'session', 'defaults filled in');
});

test('check-config rejects an unknown key with exit 1, naming file:line and the key path', async () => {
  const file = writeConfig('unknown-key.yaml', 'upstream:\n  hosts: [{ host: 127.0.0.1 }]\nlisten:\n  host: 127.0.0.1\n  prot: 6432\n');
  const { code, stderr } = await runCli(['check-config', '--config', file]);
  assert.equal(code, 1, stderr);
  assert.ok(stderr.includes(`${file}:5`), `stderr names ${file}:5: ${stderr}`);
  assert.match(stderr, /listen\.prot/);
  assert.match(stderr, /unknown key/);
});

test('check-config rejects a bad value with exit 1, naming file:line, the key path and the value', async () => {
  const file = writeConfig('bad-value.yaml', 'upstream:\n  hosts: [{ host: 127.0.0.1 }]\npool: { size: lots }\n');
  const { code, stderr } = await runCli(['check-config', '--config', file]);
  assert.equal(code, 1, stderr);
  assert.ok(stderr.includes(`${file}:3`), `stderr names ${file}:3: ${stderr}`);
  assert.match(stderr, /pool\.size/);
  assert.match(stderr, /lots/);
});

test('route prints where a statement goes and why', async () => {
  const cases: Array<[string, RegExp]> = [
    ['select * from t where id = 1', /^replica: read reason=select /],
    ['select * from t for update', /^primary: write reason=locking-clause /],
    ["select nextval('s')", /^primary: write reason=writing-function:nextval /],
    ['/* ambassador:route=primary */ select 1', /^primary: write reason=hint .*hint=primary/],
    ['selec oops', /^primary: write reason=parse-error /],
  ];
  const modules = moduleLog('route');
  for (const [sql, expected] of cases) {
    const { code, stdout } = await runCli(['route', sql], undefined, modules.preload);
    assert.equal(code, 0, sql);
    assert.match(stdout, expected, sql);
  }
  // The control for the start below, which must not load it.
  assert.ok(modules.loaded().some((url) => PARSER_MODULE.test(url)), 'route did not load the SQL parser (or the module log is empty)');
});

test('--version prints the package.json version and exits 0', async () => {
  const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const { code, stdout } = await runCli(['--version']);
  assert.equal(code, 0);
  assert.equal(stdout.trim(), version);
});

test('--help lists the check-config and demo commands and exits 0', async () => {
  const { code, stdout } = await runCli(['--help']);
  assert.equal(code, 0);
  assert.match(stdout, /^\s+check-config\b/m);
  assert.match(stdout, /^\s+demo\b/m);
  assert.match(stdout, /--config/);
});

test('probe exits 1 when nothing answers on the configured admin port, 2 for an unknown endpoint', async () => {
  const blocker = await occupyPort();
  await blocker.close(); // a port nothing listens on
  const env = cleanEnv({ UPSTREAM_HOST: '127.0.0.1', ADMIN_PORT: String(blocker.port) });
  const down = await runCli(['probe', 'readyz', '--timeout', '2000'], env);
  assert.equal(down.code, 1);
  assert.match(down.stderr, new RegExp(`no answer from http://127\\.0\\.0\\.1:${blocker.port}/readyz`));
  const unknown = await runCli(['probe', 'healthz'], env);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /expected livez \| readyz \| startupz/);
});

test('starting on a port already in use exits 3 and names the address with a hint', async () => {
  const blocker = await occupyPort();
  const port = blocker.port;
  try {
    const file = writeConfig(
      'port-taken.yaml',
      `listen: { host: 127.0.0.1, port: ${port} }\nupstream:\n  hosts: [{ host: 127.0.0.1, port: 1 }]\nadmin: { port: 0 }\n`,
    );
    const { code, stderr } = await runCli(['--config', file]);
    assert.equal(code, 3, stderr);
    assert.ok(stderr.includes(`127.0.0.1:${port}`), `stderr names the address: ${stderr}`);
    assert.match(stderr, /in use/);
    assert.match(stderr, /hint: .*port/i);
  } finally {
    await blocker.close();
  }
});

test('environment variables alone configure a working ambassador (no --config)', { timeout: 120_000 }, async () => {
  const topology = await getTopology();
  const port = await freePort();
  const modules = moduleLog('start');
  const cli = startCli(
    [],
    cleanEnv({
      UPSTREAM_HOST: `127.0.0.1:${topology.primary.port}`,
      UPSTREAM_USER: topology.users.app.user,
      UPSTREAM_PASSWORD: topology.users.app.password,
      LISTEN_PORT: String(port),
      ADMIN_PORT: '0',
      TLS_MODE: 'disable',
    }),
    modules.preload,
  );
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'app', database: 'app', connectionTimeoutMillis: 5000 });
  client.on('error', () => {});
  try {
    // Listening is announced in the log; until then (or if it exits) there is nothing to query.
    const deadline = Date.now() + 20_000;
    while (!cli.stdout().includes(`"listen":"127.0.0.1:${port}"`)) {
      if (cli.child.exitCode !== null) assert.fail(`exited with ${cli.child.exitCode}: ${cli.stdout()}${cli.stderr()}`);
      if (Date.now() > deadline) assert.fail(`not listening after 20 s: ${cli.stdout()}${cli.stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await client.connect(); // clientAuth defaults to trust: no client password
    const { rows } = await client.query('select 1 as one, current_user as who');
    assert.deepEqual(rows, [{ one: 1, who: 'app' }]);
    const loaded = modules.loaded();
    assert.ok(loaded.some((url) => url.endsWith('/src/frontend/txn-forwarder.ts') || url.endsWith('/src/frontend/session.ts')), 'the module log missed the ambassador itself');
    assert.deepEqual(loaded.filter((url) => PARSER_MODULE.test(url)), [], 'the SQL parser was loaded without read/write splitting');
    cli.child.kill('SIGTERM');
    assert.equal(await cli.exited(10_000), 0, cli.stderr());
  } finally {
    await client.end().catch(() => {});
  }
});

// What pgbench can be pointed at: the target table. Each entry prepares once (e.g. builds), then
// starts in front of the bench cluster and hands back an Endpoint plus, when it runs a process of
// its own, that pid (its CPU and RSS are charged to the runs). Adding a target (pgbouncer, the
// ambassador in transaction mode) is adding an entry.
//
// The ambassador runs from the production build (`node bin/pg-ambassador.js`, i.e. dist/) as a
// child process with a generated config in a private temp dir: loopback, OS-chosen port (read
// from its "listening" log line), scram-sha-256 clients, plaintext upstream (pgbench direct runs
// without TLS too), and an environment stripped to PATH so no UPSTREAM_* or POOL_* variable of
// ours leaks into its config.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';

import type { LocalCluster } from '../src/demo/cluster.ts';
import type { Endpoint } from './pgbench.ts';

export const ROOT = path.resolve(import.meta.dirname, '..');

export interface TargetContext {
  cluster: LocalCluster;
  /** Connections pgbench will open at once (a pooler must allow at least this many). */
  clients: number;
  log: (line: string) => void;
}

export interface RunningTarget {
  name: string;
  endpoint: Endpoint;
  /** The process whose CPU and RSS are measured, if the target has one. */
  pid: number | null;
  /** Throws when the target's process has exited (with its last output). */
  assertAlive(): void;
  /** Stops the process (graceful, then SIGKILL) and removes its files. Idempotent. */
  stop(): Promise<void>;
  /** Last-resort synchronous kill, for process exit. */
  killNow(): void;
}

export interface TargetSpec {
  name: string;
  description: string;
  prepare?(log: (line: string) => void): Promise<void>;
  start(context: TargetContext): Promise<RunningTarget>;
}

const direct: TargetSpec = {
  name: 'direct',
  description: 'pgbench straight to the primary (no TLS)',
  async start({ cluster }) {
    const { user, password } = cluster.users.app;
    return {
      name: 'direct',
      endpoint: { host: cluster.primary.host, port: cluster.primary.port, user, password, database: cluster.database },
      pid: null,
      assertAlive: () => {},
      stop: async () => {},
      killNow: () => {},
    };
  },
};

/** tsc -p tsconfig.build.json (dist/ is what bin/pg-ambassador.js runs). */
function buildAmbassador(log: (line: string) => void): Promise<void> {
  log('build: tsc -p tsconfig.build.json');
  return new Promise((resolve, reject) => {
    const tsc = spawn(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json')], {
      cwd: ROOT,
      stdio: 'inherit',
    });
    tsc.once('error', reject);
    tsc.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`build failed: tsc exited with ${code}`))));
  });
}

function ambassadorConfig(context: TargetContext, clientPassword: string): Record<string, unknown> {
  const { cluster } = context;
  return {
    listen: { host: '127.0.0.1', port: 0, maxClientConnections: Math.max(1000, context.clients * 2) },
    clientAuth: { method: 'scram-sha-256', users: [{ name: cluster.users.app.user, password: clientPassword }] },
    upstream: {
      hosts: [{ host: cluster.primary.host, port: cluster.primary.port, role: 'primary' }],
      credentials: { type: 'password', password: cluster.users.app.password },
      tls: { mode: 'disable' },
    },
    pool: { mode: 'session', size: Math.max(20, context.clients * 2) },
    shutdown: { timeout: '2s' },
    admin: { port: 0 },
    // info: the "listening" line carries the port; nothing is logged per message or per session at info.
    logging: { level: 'info' },
  };
}

const OUTPUT_KEPT = 64 * 1024;

function spawnAmbassador(context: TargetContext, name: string): Promise<RunningTarget> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-ambassador-bench-'));
  const configFile = path.join(dir, 'ambassador.yaml');
  const clientPassword = randomBytes(18).toString('base64url');
  writeFileSync(configFile, YAML.stringify(ambassadorConfig(context, clientPassword)), { mode: 0o600 });

  const child: ChildProcess = spawn(process.execPath, [path.join(ROOT, 'bin/pg-ambassador.js'), '--config', configFile], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_KEPT);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exitInfo: string | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo ??= `exit code ${code}, signal ${signal}`;
      resolve();
    });
    child.once('error', (error) => {
      exitInfo ??= `spawn error: ${error.message}`;
      resolve();
    });
  });

  let stopping: Promise<void> | undefined;
  const killNow = (): void => {
    if (exitInfo === null) child.kill('SIGKILL');
  };
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exitInfo === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
      context.log(`${name}: stopped (${exitInfo})`);
    })();
    return stopping;
  };

  return new Promise<RunningTarget>((resolve, reject) => {
    let settled = false;
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void stop().then(() => reject(new Error(`${name} did not start: ${why}\n${output}`)));
    };
    const timer = setTimeout(() => fail('no "listening" log line within 20 s'), 20_000);
    const onData = (): void => {
      const port = /"listen":"127\.0\.0\.1:(\d+)"/.exec(output)?.[1];
      if (!port || settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      context.log(`${name}: pid ${child.pid} listening on 127.0.0.1:${port}`);
      resolve({
        name,
        endpoint: { host: '127.0.0.1', port: Number(port), user: context.cluster.users.app.user, password: clientPassword, database: context.cluster.database },
        pid: child.pid!,
        assertAlive: () => {
          if (exitInfo !== null) throw new Error(`${name} (pid ${child.pid}) died: ${exitInfo}\n${output}`);
        },
        stop,
        killNow,
      });
    };
    child.stdout!.on('data', onData);
    void exited.then(() => fail(`exited before listening (${exitInfo})`));
  });
}

const ambassadorSession: TargetSpec = {
  name: 'ambassador',
  description: 'pg-ambassador (production build), session pooling, scram-sha-256 clients, upstream without TLS',
  prepare: buildAmbassador,
  start: (context) => spawnAmbassador(context, 'ambassador'),
};

/** Every target the bench knows, in run order within a round; the first is the baseline. */
export const TARGETS: readonly TargetSpec[] = [direct, ambassadorSession];

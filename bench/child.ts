// A target's process, supervised: its last output kept for error reports, its exit recorded, and a
// stop that is graceful first (SIGTERM, or the signal given, e.g. SIGINT for pgbouncer, whose
// SIGTERM is a "fast exit" with status 1; SIGKILL after 5 s) and then removes the target's private
// directory. Every signal goes to the child's own pid; nothing is looked up by name.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { RunningTarget, TargetContext } from './targets.ts';

const OUTPUT_KEPT = 64 * 1024;

export interface SupervisedChild {
  readonly pid: number | undefined;
  /** The last 64 KiB of stdout and stderr, interleaved. */
  output(): string;
  /** How the process ended ("exit code 1, signal null", "spawn error: ..."), or null while it runs. */
  exitInfo(): string | null;
  /** Resolves when the process has exited (or failed to spawn). */
  readonly exited: Promise<void>;
  /** Graceful stop (stopSignal), SIGKILL after 5 s, then the directory is removed. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL now if still running (for process exit). */
  killNow(): void;
}

export function supervise(
  child: ChildProcess,
  name: string,
  dir: string,
  log: (line: string) => void,
  stopSignal: NodeJS.Signals = 'SIGTERM',
): SupervisedChild {
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_KEPT);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
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
  return {
    pid: child.pid,
    output: () => output,
    exitInfo: () => exitInfo,
    exited,
    killNow: () => {
      if (exitInfo === null) child.kill('SIGKILL');
    },
    stop: () => {
      stopping ??= (async () => {
        if (exitInfo === null) {
          child.kill(stopSignal);
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
        log(`${name}: stopped (${exitInfo})`);
      })();
      return stopping;
    },
  };
}

/** A target's lifecycle from its supervised child: why it died (its exit and last output, plus `more()`), stop, killNow. */
export function targetLifecycle(
  supervised: SupervisedChild,
  name: string,
  more: () => string = () => '',
): { deathReason(): string | null; stop(): Promise<void>; killNow(): void } {
  return {
    deathReason: () => {
      const exit = supervised.exitInfo();
      return exit === null ? null : `${name} (pid ${supervised.pid}) died: ${exit}\n${supervised.output()}${more()}`;
    },
    stop: supervised.stop,
    killNow: supervised.killNow,
  };
}

/**
 * Waits until `read` finds what it needs in the child's output (e.g. the port of its "listening"
 * line), at each stdout write. If the child exits first or `timeoutMs` passes, the child is
 * stopped and the promise rejects with its output.
 */
export function awaitOutput<T>(child: ChildProcess, supervised: SupervisedChild, name: string, read: (output: string) => T | null, timeoutMs = 20_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      void supervised.stop().then(() => reject(new Error(`${name} did not start: ${why}\n${supervised.output()}`)));
    };
    const timer = setTimeout(() => fail(`no "listening" line within ${timeoutMs / 1000} s`), timeoutMs);
    const onData = (): void => {
      const found = settled ? null : read(supervised.output());
      if (found === null) return;
      settled = true;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      resolve(found);
    };
    child.stdout?.on('data', onData);
    void supervised.exited.then(() => fail(`exited before listening (${supervised.exitInfo()})`));
  });
}

/** One of the bench's own scripts that proxies to the primary (node-pipe, node-pool). */
export interface ScriptTarget {
  name: string;
  /** The script's path; it is run as `node --import tsx <script> <args...>`. */
  script: string;
  args: string[];
  /** Added to an environment stripped to PATH (a password goes here, not in argv: argv is readable in /proc). */
  env?: Record<string, string>;
  /** What the script is, for the log and the report. */
  details: string;
}

/**
 * Starts `target` as a child process in a private temp dir and waits for its "listening <port>"
 * line (it listens on 127.0.0.1, an OS-chosen port). pgbench logs in through it as the upstream
 * app user, so its CPU and RSS are read from /proc like every other target's.
 */
export async function spawnScriptTarget(context: TargetContext, target: ScriptTarget): Promise<RunningTarget> {
  const { cluster, log } = context;
  const { name, script, args } = target;
  const details = context.nodeOptions?.length ? `node ${context.nodeOptions.join(' ')}, ${target.details}` : target.details;
  const dir = mkdtempSync(path.join(os.tmpdir(), `pg-ambassador-bench-${name}-`));
  const child = spawn(process.execPath, [...(context.nodeOptions ?? []), '--import', 'tsx', script, ...args], {
    cwd: path.resolve(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...target.env },
  });
  const supervised = supervise(child, name, dir, log);
  const port = await awaitOutput(child, supervised, name, (output) => {
    const match = /^listening (\d+)$/m.exec(output);
    return match === null ? null : Number(match[1]);
  });
  log(`${name}: pid ${child.pid} listening on 127.0.0.1:${port} (${details})`);
  const { user, password } = cluster.users.app;
  return {
    name,
    endpoint: { host: '127.0.0.1', port, user, password, database: cluster.database },
    pid: child.pid!,
    details,
    ...targetLifecycle(supervised, name),
  };
}

// Safety net that guarantees a local cluster's servers die with the process that started them.
// Each cluster owns a ProcessReaper that knows the process-group ids of its postmasters (servers
// are spawned detached, so a postmaster's pid is also its group id and SIGKILL to -pid takes its
// backends too) and its base directory. Two layers:
//   1. in-process: on 'exit', SIGINT, SIGTERM, SIGHUP and fatal uncaught exceptions (none handled
//      by an 'uncaughtException' listener, as node:test does), every live reaper SIGKILLs its
//      groups and removes its directory, synchronously;
//   2. a detached watchdog (`node -e`) polls our pid every 500 ms and does the same if we die
//      without cleaning up (e.g. SIGKILL). It reads the pids from a file the reaper keeps current
//      and exits by itself once the base directory is gone (normal stop).
// Signal handlers are installed only while a reaper is live; after cleaning up they re-raise the
// signal when no other listener wants it, so default termination still happens.

import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const live = new Set<ProcessReaper>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

const WATCHDOG_SCRIPT = `/* pg-ambassador cluster watchdog */
const fs = require('fs');
const [parentPid, dir, pidFile] = process.argv.slice(1);
function parentAlive() {
  try { process.kill(Number(parentPid), 0); } catch (error) { return error.code === 'EPERM'; }
  try { return !/^\\d+ \\(.*\\) Z/.test(fs.readFileSync('/proc/' + parentPid + '/stat', 'utf8')); } catch { return true; }
}
function isPostgres(pid) {
  try { return /postgres|postmaster/.test(fs.readFileSync('/proc/' + pid + '/comm', 'utf8')); } catch { return true; }
}
setInterval(() => {
  if (!fs.existsSync(dir)) process.exit(0);
  if (parentAlive()) return;
  let pids = [];
  try { pids = JSON.parse(fs.readFileSync(pidFile, 'utf8')).pids; } catch {}
  for (const pid of pids) {
    if (!isPostgres(pid)) continue;
    try { process.kill(-pid, 'SIGKILL'); } catch {}
    try { process.kill(pid, 'SIGKILL'); } catch {}
  }
  try { fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5 }); } catch {}
  process.exit(0);
}, 500);
`;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // group already gone
  }
  try {
    process.kill(pid, signal);
  } catch {
    // process already gone
  }
}

function reapAllSync(): void {
  for (const reaper of live) reaper.reapSync();
}

/** An uncaught exception kills the process unless someone (e.g. node:test) handles it. */
function onUncaughtException(): void {
  if (process.listenerCount('uncaughtException') === 0) reapAllSync();
}

function onSignal(signal: NodeJS.Signals): void {
  // Another listener owns this signal (e.g. the demo's graceful shutdown): it stops the servers
  // itself; the 'exit' hook and the watchdog still reap them if it exits without doing so.
  if (process.listenerCount(signal) > 1) return;
  reapAllSync();
  uninstallHandlers();
  process.kill(process.pid, signal);
}

const signalHandlers = new Map<NodeJS.Signals, () => void>();

function installHandlers(): void {
  if (signalHandlers.size > 0) return;
  process.on('exit', reapAllSync);
  process.on('uncaughtExceptionMonitor', onUncaughtException);
  for (const signal of SIGNALS) {
    const handler = (): void => onSignal(signal);
    signalHandlers.set(signal, handler);
    process.on(signal, handler);
  }
}

function uninstallHandlers(): void {
  process.off('exit', reapAllSync);
  process.off('uncaughtExceptionMonitor', onUncaughtException);
  for (const [signal, handler] of signalHandlers) process.off(signal, handler);
  signalHandlers.clear();
}

export class ProcessReaper {
  readonly #dir: string;
  readonly #pidFile: string;
  readonly #groups = new Set<number>();
  #watchdogPid: number | undefined;

  constructor(dir: string) {
    this.#dir = dir;
    this.#pidFile = path.join(dir, '.reaper-pids.json');
    live.add(this);
    installHandlers();
    this.#writePidFile();
  }

  /** Spawns the detached watchdog; call once the base directory exists. */
  startWatchdog(): void {
    if (this.#watchdogPid !== undefined) return;
    const child = spawn(process.execPath, ['-e', WATCHDOG_SCRIPT, String(process.pid), this.#dir, this.#pidFile], {
      detached: true,
      stdio: 'ignore',
      env: { PATH: process.env.PATH ?? '' },
    });
    child.on('error', () => {}); // best effort: the in-process hooks still apply
    child.unref();
    this.#watchdogPid = child.pid;
  }

  /** Starts tracking a postmaster (its pid is its process-group id). */
  track(pid: number): void {
    this.#groups.add(pid);
    this.#writePidFile();
  }

  /** The postmaster exited: SIGKILL stragglers in its group, stop tracking it. */
  released(pid: number): void {
    killGroup(pid, 'SIGKILL');
    this.#groups.delete(pid);
    this.#writePidFile();
  }

  /** Emergency path: SIGKILL every tracked group and remove the directory, synchronously. */
  reapSync(): void {
    for (const pid of this.#groups) killGroup(pid, 'SIGKILL');
    this.#groups.clear();
    this.#removeDir();
    this.dispose();
  }

  /** Normal end of life: forget this reaper, stop its watchdog. Does not touch servers. */
  dispose(): void {
    live.delete(this);
    if (live.size === 0) uninstallHandlers();
    if (this.#watchdogPid !== undefined) {
      try {
        process.kill(this.#watchdogPid, 'SIGTERM');
      } catch {
        // already exited
      }
      this.#watchdogPid = undefined;
    }
  }

  #removeDir(): void {
    try {
      rmSync(this.#dir, { recursive: true, force: true, maxRetries: 5 });
    } catch {
      // best effort at exit
    }
  }

  #writePidFile(): void {
    try {
      writeFileSync(this.#pidFile, JSON.stringify({ parent: process.pid, pids: [...this.#groups] }));
    } catch {
      // directory already removed
    }
  }
}

// CPU time and resident memory of a process, from Linux /proc. Used to charge the ambassador's
// CPU to the transactions of one run (read before and after: utime and stime, fields 14 and 15 of
// /proc/<pid>/stat, in clock ticks; user time also apart, as the kernel's share is much the
// same for any proxy that makes the same system calls) and to record its RSS after the run (VmRSS of
// /proc/<pid>/status). The parsers are pure; the readers throw when the process is gone.
//
// Also the CPU of the database servers behind the proxy (every process of each postmaster), and
// how idle the whole machine was: a proxy can cost its servers CPU too (they share the 2 cores
// and their caches), and a run where the CPUs sat idle was held back by something else.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** `getconf CLK_TCK` (the unit of /proc/<pid>/stat times), read once; 100 if getconf fails. */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim());
      ticksPerSecond = Number.isInteger(value) && value > 0 ? value : 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** What the CPU readings need of /proc/<pid>/stat: the state (field 3), the parent (4), and the process's own and its reaped children's times in clock ticks (14-17). */
export interface ProcStat {
  state: string;
  ppid: number;
  utime: number;
  stime: number;
  /** CPU of children that exited and were waited for (a postmaster reaps its backends). */
  cutime: number;
  cstime: number;
}

/**
 * Field 2 of /proc/<pid>/stat, the command name, is in parentheses and may itself contain spaces
 * and parentheses, so fields are counted from the last ")": the field after it is field 3.
 */
export function parseProcStat(text: string): ProcStat {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error(`unexpected /proc/<pid>/stat content: ${text.slice(0, 80)}`);
  const fields = text.slice(close + 2).trim().split(/\s+/);
  const [ppid, utime, stime, cutime, cstime] = [4, 14, 15, 16, 17].map((field) => Number(fields[field - 3]));
  if (![ppid, utime, stime, cutime, cstime].every(Number.isFinite)) throw new Error(`no ppid/utime/stime in /proc/<pid>/stat: ${text.slice(0, 120)}`);
  return { state: fields[0]!, ppid: ppid!, utime: utime!, stime: stime!, cutime: cutime!, cstime: cstime! };
}

/** CPU seconds, all of it and its user part. */
export interface CpuReading {
  user: number;
  total: number;
}

/**
 * The CPU ticks of the process trees under `roots` (the servers' postmasters), from the stat of
 * every process: each process of a tree, at any depth, with its own times and those of the
 * children it reaped. Taken before and after a run, the difference is what the trees used in
 * between, processes that exited meanwhile included (a reaped child's times move to its parent's
 * reaped-children times).
 */
export function serverTicks(roots: readonly number[], processes: ReadonlyMap<number, ProcStat>): CpuReading {
  const inTree = new Map<number, boolean>(roots.map((pid) => [pid, true]));
  const belongs = (pid: number): boolean => {
    const path: number[] = [];
    let at = pid;
    let found: boolean | undefined;
    while ((found = inTree.get(at)) === undefined) {
      path.push(at);
      const parent = processes.get(at)?.ppid;
      if (parent === undefined || parent <= 1 || path.length > processes.size) {
        found = false;
        break;
      }
      at = parent;
    }
    for (const step of path) inTree.set(step, found);
    return found;
  };
  let user = 0;
  let total = 0;
  for (const [pid, stat] of processes) {
    if (!belongs(pid)) continue;
    user += stat.utime + stat.cutime;
    total += stat.utime + stat.stime + stat.cutime + stat.cstime;
  }
  return { user, total };
}

/** Where readServerCpu reads processes from: /proc, or a test's own table. */
export interface ProcSource {
  /** The names in /proc (pids among them). */
  list(): string[];
  /** The text of /proc/<pid>/stat; throws when the process is gone. */
  stat(pid: number): string;
}

const PROC: ProcSource = {
  list: () => readdirSync('/proc'),
  stat: (pid) => readFileSync(`/proc/${pid}/stat`, 'utf8'),
};

/** A postmaster's stat; throws when it is gone or dead (then its children are no longer its own, and no reading is right). */
function readRoot(source: ProcSource, pid: number): ProcStat {
  const stat = parseProcStat(source.stat(pid));
  if (stat.state === 'Z' || stat.state === 'X') throw new Error(`process ${pid} has exited`);
  return stat;
}

const reaped = (stat: ProcStat): number => stat.cutime + stat.cstime;

/**
 * CPU seconds used so far by the process trees under `roots` (see serverTicks). Throws when a
 * root is gone. A child reaped while the other processes were being read would count nowhere (or
 * twice), so the roots are read again after them and the reading is taken again when one reaped
 * a child meanwhile.
 */
export function readServerCpu(roots: readonly number[], source: ProcSource = PROC): CpuReading {
  for (let attempt = 1; ; attempt++) {
    const first = roots.map((pid) => readRoot(source, pid));
    const processes = new Map<number, ProcStat>();
    for (const name of source.list()) {
      const pid = Number(name);
      if (!Number.isInteger(pid)) continue;
      try {
        processes.set(pid, parseProcStat(source.stat(pid)));
      } catch {
        // gone between the listing and the read: if it was a server's, its parent's times changed
      }
    }
    const last = roots.map((pid) => readRoot(source, pid));
    const settled = last.every((stat, i) => reaped(stat) === reaped(first[i]!));
    if (settled || attempt === 5) {
      roots.forEach((pid, i) => processes.set(pid, last[i]!));
      const ticks = serverTicks(roots, processes);
      const perSecond = clockTicksPerSecond();
      return { user: ticks.user / perSecond, total: ticks.total / perSecond };
    }
  }
}

/** The whole machine's CPU ticks from the first line of /proc/stat: idle (idle + iowait) and all (user to steal; guest time is in user already). */
export function parseMachineTicks(text: string): { idle: number; all: number } {
  const line = /^cpu\s+([\d\s]+)$/m.exec(text)?.[1];
  const fields = line?.trim().split(/\s+/).slice(0, 8).map(Number) ?? [];
  if (fields.length < 5 || !fields.every(Number.isFinite)) throw new Error(`no cpu line in /proc/stat: ${text.slice(0, 80)}`);
  return { idle: fields[3]! + fields[4]!, all: fields.reduce((sum, ticks) => sum + ticks, 0) };
}

export function readMachineTicks(): { idle: number; all: number } {
  return parseMachineTicks(readFileSync('/proc/stat', 'utf8'));
}

/** VmRSS in bytes from the text of /proc/<pid>/status. */
export function parseVmRssBytes(text: string): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  if (!match?.[1]) throw new Error('no VmRSS line in /proc/<pid>/status (is the process a zombie?)');
  return Number(match[1]) * 1024;
}

/** User and system CPU seconds the process has used so far. */
export function readCpuTimes(pid: number): { user: number; system: number } {
  const { utime, stime } = parseProcStat(PROC.stat(pid));
  const ticks = clockTicksPerSecond();
  return { user: utime / ticks, system: stime / ticks };
}

/** User + system CPU seconds the process has used so far. */
export function readCpuSeconds(pid: number): number {
  const { user, system } = readCpuTimes(pid);
  return user + system;
}

/** Resident set size of the process now, in bytes. */
export function readRssBytes(pid: number): number {
  return parseVmRssBytes(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

// CPU time and resident memory of a process, from Linux /proc. Used to charge the ambassador's
// CPU to the transactions of one run (read before and after: utime and stime, fields 14 and 15 of
// /proc/<pid>/stat, in clock ticks; user time also apart, as the kernel's share is much the
// same for any proxy that makes the same system calls) and to record its RSS after the run (VmRSS of
// /proc/<pid>/status). The parsers are pure; the readers throw when the process is gone.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

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

/**
 * utime and stime (clock ticks) from the text of /proc/<pid>/stat. Field 2, the command name, is
 * in parentheses and may itself contain spaces and parentheses, so fields are counted from the
 * last ")": the field after it is field 3 (state), which puts utime (14) at index 11.
 */
export function parseProcStatTicks(text: string): { utime: number; stime: number } {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error(`unexpected /proc/<pid>/stat content: ${text.slice(0, 80)}`);
  const fields = text.slice(close + 2).trim().split(/\s+/);
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`no utime/stime in /proc/<pid>/stat: ${text.slice(0, 120)}`);
  return { utime, stime };
}

/** VmRSS in bytes from the text of /proc/<pid>/status. */
export function parseVmRssBytes(text: string): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  if (!match?.[1]) throw new Error('no VmRSS line in /proc/<pid>/status (is the process a zombie?)');
  return Number(match[1]) * 1024;
}

/** User and system CPU seconds the process has used so far. */
export function readCpuTimes(pid: number): { user: number; system: number } {
  const { utime, stime } = parseProcStatTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
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

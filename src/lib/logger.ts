// The process logger: pino JSON lines on stdout. Secrets are redacted at the logger as a last
// line of defence; code never puts them in log fields in the first place.
//
// stdout may lose its reader (a log collector died, the parent exited): logging then stops
// silently and the process goes on serving; the log flush at exit must not keep it alive.

import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';

export const REDACTED_PATHS = [
  'password',
  '*.password',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'credentials.password',
  'config.upstream.credentials.password',
];

export function createLogger(options: { level: string; destination?: NodeJS.WritableStream }): Logger {
  return pino(
    {
      name: 'pg-ambassador',
      level: options.level,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? stdoutDestination(),
  );
}

const STDOUT_FD = 1;

/**
 * pino's asynchronous stdout destination (sonic-boom), with an exit flush that gives up on a
 * stdout nobody reads any more.
 *
 * At process exit pino writes what is still buffered with sonic-boom's flushSync, which (sonic-boom
 * 4; 5 throws instead) sleeps 100 ms and retries after every failed write, not only EAGAIN/EBUSY:
 * with the pipe's reader gone every write fails with EPIPE, so process.exit never returns. pino turns logging off on
 * EPIPE, but only once an asynchronous write reports it, and a process.exit right after logging
 * (the end of a shutdown) comes first: the write is still in flight, the next lines are queued.
 */
function stdoutDestination(): DestinationStream {
  const destination = pino.destination({ fd: STDOUT_FD, sync: false });
  const flushSync = destination.flushSync.bind(destination);
  destination.flushSync = () => dropUnwritable(STDOUT_FD, flushSync);
  return destination;
}

/**
 * Runs `flush` (synchronous) with writes to `fd` that fail for good (EPIPE, EIO, EBADF: anything
 * but "try again") counted as done: those bytes are dropped, and so is the rest, unwritten.
 */
function dropUnwritable(fd: number, flush: () => void): void {
  const writeSync = fs.writeSync as (target: number, data: string | NodeJS.ArrayBufferView, ...rest: unknown[]) => number;
  let unwritable = false;
  fs.writeSync = ((target: number, data: string | NodeJS.ArrayBufferView, ...rest: unknown[]): number => {
    if (target !== fd) return writeSync(target, data, ...rest);
    try {
      if (!unwritable) return writeSync(target, data, ...rest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EBUSY') throw err;
      unwritable = true;
    }
    return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
  }) as typeof fs.writeSync;
  try {
    flush();
  } finally {
    fs.writeSync = writeSync as typeof fs.writeSync;
  }
}

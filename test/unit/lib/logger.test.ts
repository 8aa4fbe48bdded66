// The stdout logger at process exit, in a child process whose stdout is a pipe: with the reader
// there, lines logged right before process.exit still arrive; with the reader gone, the process
// still exits. It used to hang for ever in the exit flush, retrying the write to the closed pipe.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';

const LOGGER = pathToFileURL(path.resolve(import.meta.dirname, '../../../src/lib/logger.ts')).href;

/**
 * Logs two lines and exits at once when a line arrives on stdin: the first line is still being
 * written (asynchronously) and the second queued when the exit flush runs.
 */
const LOG_THEN_EXIT = `
import { createLogger } from ${JSON.stringify(LOGGER)};
const logger = createLogger({ level: 'info' });
process.stdin.once('data', () => {
  logger.info('first');
  logger.info('second');
  process.exit(0);
});
`;

function startChild(): { child: ChildProcess; exited: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', LOG_THEN_EXIT], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, stderr: () => stderr };
}

/** The exit code, or a failure (and SIGKILL) when the child has not exited by the deadline. */
async function exitCodeWithin(started: ReturnType<typeof startChild>, timeoutMs: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      started.child.kill('SIGKILL');
      reject(new Error(`the child did not exit within ${timeoutMs} ms; stderr: ${started.stderr()}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([started.exited, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

test('lines logged right before process.exit reach a stdout that is read', { timeout: 30_000 }, async () => {
  const started = startChild();
  let stdout = '';
  started.child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  started.child.stdin!.end('go\n');
  assert.equal(await exitCodeWithin(started, 20_000), 0);
  const messages = stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { msg: string }).msg);
  // Not always in order: sonic-boom's exit flush writes the queued line while the first one's
  // asynchronous write may still be under way.
  assert.deepEqual(messages.sort(), ['first', 'second']);
});

test('process.exit right after logging returns when stdout\'s reader is gone', { timeout: 30_000 }, async () => {
  const started = startChild();
  started.child.stdout!.destroy();
  started.child.stdin!.end('go\n');
  assert.equal(await exitCodeWithin(started, 20_000), 0);
});

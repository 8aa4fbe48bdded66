// A target's child process: awaitOutput resolves with what the child printed, or stops it and
// rejects with its output when it exits first.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { awaitOutput, supervise } from '../../../bench/child.ts';

function child(script: string) {
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const supervised = supervise(proc, 'child', mkdtempSync(path.join(os.tmpdir(), 'bench-child-test-')), () => {});
  return { proc, supervised };
}

test('awaitOutput resolves with what read() finds once the child prints it', async () => {
  const { proc, supervised } = child("setTimeout(() => console.log('listening 4242'), 50); setInterval(() => {}, 1000)");
  try {
    const port = await awaitOutput(proc, supervised, 'child', (output) => {
      const match = /^listening (\d+)$/m.exec(output);
      return match === null ? null : Number(match[1]);
    });
    assert.equal(port, 4242);
    assert.equal(supervised.exitInfo(), null, 'the child runs on');
  } finally {
    await supervised.stop();
  }
});

test('awaitOutput rejects with the output when the child exits before printing it', async () => {
  const { proc, supervised } = child("console.error('bad config'); process.exit(3)");
  await assert.rejects(
    awaitOutput(proc, supervised, 'child', () => null),
    (err: Error) => /child did not start: exited before listening \(exit code 3/.test(err.message) && err.message.includes('bad config'),
  );
});

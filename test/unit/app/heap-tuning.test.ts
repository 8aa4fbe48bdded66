// heap-tuning.ts: the young generation grows no more unless the user chose a young-generation
// flag. Each case runs in a child Node, whose young generation is then churned.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { youngGenerationChosen } from '../../../src/heap-tuning.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../../..');

/**
 * The child's new space size (bytes) once it has imported heap-tuning.ts, and again after it made
 * garbage that survives a few scavenges (which grows an untuned young generation). tsx's own
 * start may grow it before the import: only what happens after it is the tuning's.
 */
async function newSpaceBeforeAndAfterChurn(nodeArgs: string[], nodeOptions = ''): Promise<[number, number]> {
  const script = `
    await import(${JSON.stringify(path.join(ROOT, 'src/heap-tuning.ts'))});
    const v8 = await import('node:v8');
    const size = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    const before = size();
    let keep = [];
    for (let i = 0; i < 2e6; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 50000) keep = []; }
    console.log(JSON.stringify([before, size()]));`;
  const { stdout } = await run(process.execPath, [...nodeArgs, '--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, NODE_OPTIONS: nodeOptions },
  });
  return JSON.parse(stdout) as [number, number];
}

test('the young generation grows no more once heap-tuning is imported; a flag of the user\'s own wins', async () => {
  const [held, byArgument, byNodeOptions] = await Promise.all([
    newSpaceBeforeAndAfterChurn([]),
    newSpaceBeforeAndAfterChurn(['--semi-space-growth-factor=2']),
    newSpaceBeforeAndAfterChurn([], '--max-semi-space-size=16'),
  ]);
  assert.ok(held[0] > 0 && held[1] === held[0], `new space ${held[0]} -> ${held[1]} bytes: it grew`);
  assert.ok(byArgument[1] > byArgument[0], `new space ${byArgument.join(' -> ')} bytes with the user's --semi-space-growth-factor: the tuning overrode it`);
  assert.ok(byNodeOptions[1] > byNodeOptions[0], `new space ${byNodeOptions.join(' -> ')} bytes with NODE_OPTIONS=--max-semi-space-size: the tuning overrode it`);
});

test('young-generation flags are recognised in node\'s arguments and NODE_OPTIONS, with - or _', () => {
  assert.equal(youngGenerationChosen([], undefined), false);
  assert.equal(youngGenerationChosen(['--max-old-space-size=200', '--import', 'tsx'], '--enable-source-maps'), false);
  assert.equal(youngGenerationChosen(['--max-semi-space-size=8'], undefined), true);
  assert.equal(youngGenerationChosen([], '--enable-source-maps  --min_semi_space_size=2'), true);
  assert.equal(youngGenerationChosen(['--semi-space-growth-factor', '4'], ''), true);
  assert.equal(youngGenerationChosen([], '--max-young-generation-size=16'), true);
});

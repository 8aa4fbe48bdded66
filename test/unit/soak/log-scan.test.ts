// The ambassador's warnings over a whole run, from a 64 KiB tail of its output scanned at every
// sample: each line counted once, levels as numbers or labels, cut and non-JSON lines skipped.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WarningScanner } from '../../../soak/log-scan.ts';

function line(time: string | number, level: string | number, msg: string, extra = ''): string {
  return JSON.stringify({ level, time, msg, extra });
}

test('levels: numbers 40+ and the labels warn, error, fatal; info and below are not counted', () => {
  const scanner = new WarningScanner();
  scanner.scan([
    line(1, 30, 'info number'), line(2, 'info', 'info label'), line(3, 40, 'a'), line(4, 'warn', 'a'), line(5, 50, 'b'), line(6, 'fatal', 'c'), 'not json', 'l":40,"msg":"cut"}',
  ].join('\n'));
  assert.deepEqual(scanner.lines().map(({ level, msg, count }) => ({ level, msg, count })), [
    { level: 'warn', msg: 'a', count: 2 },
    { level: 'error', msg: 'b', count: 1 },
    { level: 'fatal', msg: 'c', count: 1 },
  ]);
  assert.equal(scanner.lines()[0]!.example, line(3, 40, 'a'), 'the first line is kept as the example');
});

test('overlapping tails: a line is counted once, also when several share the newest millisecond', () => {
  const scanner = new WarningScanner();
  const t = (ms: number): string => new Date(1_700_000_000_000 + ms).toISOString();
  const first = [line(t(1), 'warn', 'x', '1'), line(t(2), 'warn', 'x', '2'), line(t(2), 'warn', 'x', '3')];
  scanner.scan(first.join('\n'));
  // The tail slid: the oldest line is gone, another line at the same millisecond and a newer one arrived.
  scanner.scan([first[1], first[2], line(t(2), 'warn', 'x', '4'), line(t(3), 'error', 'y')].join('\n'));
  scanner.scan([line(t(3), 'error', 'y')].join('\n'));
  assert.deepEqual(scanner.lines().map(({ level, msg, count }) => ({ level, msg, count })), [
    { level: 'warn', msg: 'x', count: 4 },
    { level: 'error', msg: 'y', count: 1 },
  ]);
});

test('lines without a time are skipped (they cannot be told apart across scans)', () => {
  const scanner = new WarningScanner();
  scanner.scan(JSON.stringify({ level: 'warn', msg: 'no time' }));
  assert.deepEqual(scanner.lines(), []);
});

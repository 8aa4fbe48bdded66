// Durations, byte sizes and stored-password forms: every accepted form and the refusals.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { classifyPassword, parseByteSize, parseDuration } from '../../../src/config/index.ts';
import { toReplicaLag } from '../../../src/config/values.ts';

test('parseDuration accepts ms, s, m, h and bare milliseconds', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('5s'), 5000);
  assert.equal(parseDuration('10m'), 600_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration(1500), 1500);
  assert.equal(parseDuration('1500'), 1500);
  assert.equal(parseDuration('0'), 0);
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('0.1s'), 100);
  assert.equal(parseDuration(' 5 s '), 5000);
  assert.equal(parseDuration('5S'), 5000);
});

test('parseDuration refuses negatives, fractions of a millisecond, unknown units and overflow', () => {
  for (const bad of ['-1s', '-5', '0.5ms', '1.5', '5 sec', '5d', 's', '', 'abc', '1e3s', '25d']) {
    assert.throws(() => parseDuration(bad), ConfigError, bad);
  }
  assert.throws(() => parseDuration('600h'), /expected a duration/); // beyond setTimeout's 2^31-1 ms
  assert.equal(parseDuration(2 ** 31 - 1), 2 ** 31 - 1);
  assert.throws(() => parseDuration(2 ** 31));
  assert.throws(() => parseDuration(Number.NaN));
});

test('parseByteSize accepts bytes, SI and IEC units, any case', () => {
  assert.equal(parseByteSize(1024), 1024);
  assert.equal(parseByteSize('1024'), 1024);
  assert.equal(parseByteSize('100B'), 100);
  assert.equal(parseByteSize('512kB'), 512_000);
  assert.equal(parseByteSize('512KB'), 512_000);
  assert.equal(parseByteSize('64MB'), 64_000_000);
  assert.equal(parseByteSize('1GB'), 1_000_000_000);
  assert.equal(parseByteSize('64KiB'), 65_536);
  assert.equal(parseByteSize('16MiB'), 16 * 1024 * 1024);
  assert.equal(parseByteSize('1GiB'), 1_073_741_824);
  assert.equal(parseByteSize('1gib'), 1_073_741_824);
  assert.equal(parseByteSize('1.5KiB'), 1536);
});

test('parseByteSize refuses unknown units, fractions of a byte, negatives and > int32', () => {
  for (const bad of ['1TB', '2GiB', '1.5', '0.5B', '-1', 'lots', '10 bits', '']) {
    assert.throws(() => parseByteSize(bad), /expected a size like/, bad);
  }
  assert.equal(parseByteSize(2 ** 31 - 1), 2 ** 31 - 1);
});

test('replica lag is a duration (bare numbers are ms) or a WAL size', () => {
  assert.deepEqual(toReplicaLag('10s'), { ms: 10_000 });
  assert.deepEqual(toReplicaLag(500), { ms: 500 });
  assert.deepEqual(toReplicaLag('16MB'), { bytes: 16_000_000 });
  assert.deepEqual(toReplicaLag('1GiB'), { bytes: 1_073_741_824 });
  assert.equal(toReplicaLag('soon'), undefined);
});

test('classifyPassword tells plaintext, md5 hashes and SCRAM verifiers apart', () => {
  const key = Buffer.alloc(32, 7).toString('base64');
  assert.equal(classifyPassword('hunter2'), 'plain');
  assert.equal(classifyPassword('md5' + 'a'.repeat(32)), 'md5');
  assert.equal(classifyPassword('md5' + 'A'.repeat(32)), 'plain'); // Postgres writes lowercase hex
  assert.equal(classifyPassword('md5' + 'a'.repeat(31)), 'plain');
  assert.equal(classifyPassword(`SCRAM-SHA-256$4096:c2FsdA==$${key}:${key}`), 'scram-sha-256');
  assert.equal(classifyPassword(`SCRAM-SHA-256$4096:c2FsdA==$${key}`), undefined);
  assert.equal(classifyPassword(`SCRAM-SHA-256$0:c2FsdA==$${key}:${key}`), undefined);
  assert.equal(classifyPassword(`SCRAM-SHA-256$4096:c2FsdA==$c2hvcnQ=:${key}`), undefined);
});

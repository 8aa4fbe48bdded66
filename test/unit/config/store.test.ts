// ConfigStore: whole swaps with a 'change' event; a failed reload keeps the old config.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { ConfigStore, parseConfigText, type Config } from '../../../src/config/index.ts';

const load = (size: number | string) => parseConfigText(`upstream:\n  hosts: [{ host: db }]\npool:\n  size: ${size}\n`, { file: 'a.yaml', env: {} });

test('replace swaps the config whole and emits change (next, prev)', () => {
  const first = load(1);
  const second = load(2);
  const store = new ConfigStore(first);
  const seen: [Config, Config][] = [];
  store.on('change', (next, prev) => seen.push([next, prev]));
  store.replace(second);
  assert.equal(store.current, second);
  assert.deepEqual(seen, [[second, first]]);
});

test('reloadFrom: a good loader swaps, a bad one keeps the old config and returns the error', () => {
  const store = new ConfigStore(load(1));
  let changes = 0;
  store.on('change', () => changes++);

  assert.deepEqual(store.reloadFrom(() => load(5)), { ok: true });
  assert.equal(store.current.pool.size, 5);

  const before = store.current;
  const result = store.reloadFrom(() => load('lots'));
  assert.equal(result.ok, false);
  assert.ok(!result.ok && result.error instanceof ConfigError);
  assert.ok(!result.ok && result.error.message.startsWith('a.yaml:4: pool.size: expected a positive integer'));
  assert.equal(store.current, before);
  assert.equal(changes, 1);
});

test('reloadFrom wraps a non-ConfigError failure and still keeps the old config', () => {
  const store = new ConfigStore(load(1));
  const result = store.reloadFrom(() => {
    throw new Error('disk on fire');
  });
  assert.ok(!result.ok);
  assert.ok(result.error instanceof ConfigError);
  assert.match(result.error.message, /disk on fire/);
  assert.equal(store.current.pool.size, 1);
});

test('the store freezes what it holds', () => {
  const unfrozen = structuredClone(load(1)) as Config;
  const store = new ConfigStore(unfrozen);
  assert.ok(Object.isFrozen(store.current.pool));
});

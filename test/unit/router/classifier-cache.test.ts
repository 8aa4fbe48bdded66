// Text-keyed containers: TextCache.clear() and TextStore (insertion order, bounded by entries and
// key characters, oldest dropped first, a replaced key becomes the newest).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TextCache, TextStore } from '../../../src/router/classifier-cache.ts';

test('TextCache.clear drops both generations', () => {
  const cache = new TextCache<number>(4, 1000);
  for (let index = 0; index < 3; index += 1) cache.set(`k${index}`, index);
  assert.ok(cache.size > 0);
  cache.clear();
  assert.equal(cache.size, 0);
  assert.equal(cache.get('k0'), undefined);
  assert.equal(cache.get('k2'), undefined);
  cache.set('k9', 9);
  assert.equal(cache.get('k9'), 9);
});

test('TextStore keeps at most maxEntries, dropping the oldest', () => {
  const store = new TextStore<number>(2, 1000);
  store.set('a', 1);
  store.set('b', 2);
  store.set('c', 3);
  assert.equal(store.size, 2);
  assert.equal(store.get('a'), undefined);
  assert.equal(store.get('b'), 2);
  assert.equal(store.get('c'), 3);
});

test('TextStore: a replaced key becomes the newest', () => {
  const store = new TextStore<number>(2, 1000);
  store.set('a', 1);
  store.set('b', 2);
  store.set('a', 10);
  store.set('c', 3);
  assert.equal(store.get('b'), undefined);
  assert.equal(store.get('a'), 10);
  assert.equal(store.size, 2);
});

test('TextStore keeps at most maxChars key characters; a key over the budget is not kept', () => {
  const store = new TextStore<number>(100, 10);
  store.set('aaaa', 1);
  store.set('bbbb', 2);
  store.set('cccc', 3); // 12 characters: 'aaaa' goes
  assert.equal(store.size, 2);
  assert.equal(store.get('aaaa'), undefined);
  store.set('x'.repeat(11), 4);
  assert.equal(store.size, 2);
  assert.equal(store.get('x'.repeat(11)), undefined);
  store.set('cccc', 30); // replacing does not count the key twice
  store.set('dd', 5);
  assert.deepEqual([store.get('bbbb'), store.get('cccc'), store.get('dd')], [2, 30, 5]);
});

test('TextStore with no room keeps nothing', () => {
  const store = new TextStore<number>(0, 10);
  store.set('a', 1);
  assert.equal(store.size, 0);
});

// The label rules on their own: reasons cut at the first ':' and capped, raw reasons cached (one
// child per label, made once), SQLSTATE classes, and the host of a pool key (Unix socket
// directories included).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MALFORMED_CLASS, OTHER_REASON, poolKeyHost, ReasonLabels, reasonLabel, sqlstateClass } from '../../../src/metrics/labels.ts';

test('reasonLabel keeps the part before the first colon; empty is none', () => {
  assert.equal(reasonLabel('volatile-function:pg_advisory_lock'), 'volatile-function');
  assert.equal(reasonLabel('writing-function:a:b'), 'writing-function');
  assert.equal(reasonLabel('select'), 'select');
  assert.equal(reasonLabel(''), 'none');
  assert.equal(reasonLabel(':detail'), 'none');
});

test('ReasonLabels makes one value per label, once, and returns the same object for a known raw reason', () => {
  const made: string[] = [];
  const labels = new ReasonLabels((label) => {
    made.push(label);
    return { label };
  });
  const first = labels.get('unknown-function:foo');
  assert.equal(labels.get('unknown-function:bar'), first, 'same label, same child');
  assert.equal(labels.get('unknown-function:foo'), first);
  assert.equal(labels.get('select').label, 'select');
  assert.deepEqual(made, ['unknown-function', 'select']);
});

test('ReasonLabels caps distinct labels; later ones share other, earlier ones keep their own', () => {
  const labels = new ReasonLabels((label) => label, 3);
  assert.deepEqual(['a', 'b', 'c', 'd', 'e:x', 'a:again'].map((raw) => labels.get(raw)), ['a', 'b', 'c', OTHER_REASON, OTHER_REASON, 'a']);
  assert.equal(labels.size, 4, 'three labels and other');
});

test('ReasonLabels stays correct past its raw-reason cache', () => {
  const labels = new ReasonLabels((label) => label, 64, 2);
  for (let i = 0; i < 10; i++) assert.equal(labels.get(`volatile-function:f${i}`), 'volatile-function');
  assert.equal(labels.size, 1);
});

test('sqlstateClass: first two characters of a well-formed SQLSTATE, else XX', () => {
  assert.equal(sqlstateClass('42P01'), '42');
  assert.equal(sqlstateClass('08006'), '08');
  assert.equal(sqlstateClass('57P01'), '57');
  assert.equal(sqlstateClass('XX000'), 'XX');
  for (const odd of ['', '42', '42P0', '42P012', '42p01', ' 42P0', undefined, null, 42]) assert.equal(sqlstateClass(odd), MALFORMED_CLASS, String(odd));
});

test('poolKeyHost: the known host that prefixes the key, else the part before the first slash', () => {
  assert.equal(poolKeyHost('db1:5432/app/alice'), 'db1:5432');
  assert.equal(poolKeyHost('db1:5432/app/alice', ['db1:5432', 'db1:54321']), 'db1:5432');
  assert.equal(poolKeyHost('db1:54321/app/alice', ['db1:5432', 'db1:54321']), 'db1:54321');
  assert.equal(poolKeyHost('::1:5432/app/alice', ['::1:5432']), '::1:5432');
  assert.equal(poolKeyHost('/var/run/postgresql:5432/app/alice', ['/var/run/postgresql:5432']), '/var/run/postgresql:5432');
  assert.equal(poolKeyHost('/tmp/pg:5432/app/alice'), '/tmp/pg:5432', 'an unknown socket directory: all but database and user');
  assert.equal(poolKeyHost('db2:5432/a/b', ['db1:5432']), 'db2:5432');
  assert.equal(poolKeyHost('nokey'), 'nokey');
});

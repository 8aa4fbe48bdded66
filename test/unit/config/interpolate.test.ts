// ${VAR} interpolation: substitution, defaults, the $${ escape, errors with file:line and key path,
// and coercion of interpolated values to the types the schema wants.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { parseConfigText } from '../../../src/config/index.ts';
import { InterpolationError, interpolateString, interpolateTree } from '../../../src/config/interpolate.ts';

test('${VAR} is replaced from the env map, anywhere in a string', () => {
  const env = { HOST: 'db', PORT: '6432' };
  assert.equal(interpolateString('${HOST}', env), 'db');
  assert.equal(interpolateString('postgres://${HOST}:${PORT}/x', env), 'postgres://db:6432/x');
  assert.equal(interpolateString('no references', env), 'no references');
  assert.equal(interpolateString('cost $5 and $HOST', env), 'cost $5 and $HOST');
  assert.equal(interpolateString('${EMPTY}', { EMPTY: '' }), '');
});

test('${VAR:-default} uses the default when VAR is unset or empty', () => {
  assert.equal(interpolateString('${PORT:-6432}', {}), '6432');
  assert.equal(interpolateString('${PORT:-6432}', { PORT: '' }), '6432');
  assert.equal(interpolateString('${PORT:-6432}', { PORT: '7000' }), '7000');
  assert.equal(interpolateString('${X:-}', {}), '');
  assert.equal(interpolateString('${X:-a:-b c}', {}), 'a:-b c');
});

test('$${ is a literal ${', () => {
  assert.equal(interpolateString('$${HOME}', { HOME: '/root' }), '${HOME}');
  assert.equal(interpolateString('a$${b}${C}', { C: 'c' }), 'a${b}c');
  // "$$${C}": a lone "$", then the escape "$${", then plain "C}".
  assert.equal(interpolateString('$$${C}', { C: 'c' }), '$${C}');
});

test('a missing variable, a bad name and an unterminated reference are errors with the path', () => {
  assert.throws(() => interpolateTree({ a: { b: ['x', '${MISSING}'] } }, {}), (err: unknown) => {
    assert.ok(err instanceof InterpolationError);
    assert.deepEqual(err.path, ['a', 'b', 1]);
    assert.match(err.message, /environment variable MISSING is not set/);
    return true;
  });
  assert.throws(() => interpolateString('${1BAD}', {}), /invalid reference \$\{1BAD\}/);
  assert.throws(() => interpolateString('${OPEN', {}), /unterminated/);
});

test('keys are not interpolated, and non-string values pass through', () => {
  assert.deepEqual(interpolateTree({ '${K}': 1, n: 2, b: true, z: null }, { K: 'k' }), { '${K}': 1, n: 2, b: true, z: null });
});

test('in a file: ${VAR} with VAR unset names file:line and key path', () => {
  const text = 'listen:\n  port: 6432\nupstream:\n  hosts:\n    - host: ${PGHOST}\n';
  assert.throws(() => parseConfigText(text, { file: 'ambassador.yaml', env: {} }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.line, 5);
    assert.equal(err.keyPath, 'upstream.hosts[0].host');
    assert.match(err.message, /^ambassador\.yaml:5: upstream\.hosts\[0\]\.host: environment variable PGHOST is not set/);
    return true;
  });
});

test('in a file: interpolated numbers and booleans are coerced for the schema', () => {
  const text = [
    'listen:',
    '  port: ${PORT:-6432}',
    'upstream:',
    '  hosts:',
    '    - host: ${PGHOST}',
    '      port: ${PGPORT}',
    'routing:',
    '  readWriteSplit: ${SPLIT:-false}',
    'pool:',
    '  idleTimeout: ${IDLE:-30s}',
    '',
  ].join('\n');
  const config = parseConfigText(text, { env: { PGHOST: 'db', PGPORT: '5433', SPLIT: 'true' } });
  assert.equal(config.listen.port, 6432);
  assert.equal(config.upstream.hosts[0]?.port, 5433);
  assert.equal(config.upstream.hosts[0]?.host, 'db');
  assert.equal(config.routing.readWriteSplit, true);
  assert.equal(config.pool.idleTimeout, 30_000);
});

test('in a file: a bad interpolated value is reported at the line that referenced it', () => {
  const text = 'upstream:\n  hosts: [{ host: db }]\npool:\n  size: ${POOL_SIZE_FILE:-ten}\n';
  assert.throws(() => parseConfigText(text, { file: 'f.yaml', env: {} }), /^ConfigError: f\.yaml:4: pool\.size: expected a positive integer, got "ten"$/);
});

test('in a file: $${ keeps a literal ${ in the value', () => {
  const text = 'upstream:\n  hosts: [{ host: db }]\n  credentials: { type: password, password: "p$${x}" }\n';
  const config = parseConfigText(text, { env: { x: 'no' } });
  assert.deepEqual(config.upstream.credentials, { type: 'password', password: 'p${x}' });
});

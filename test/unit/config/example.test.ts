// config/ambassador.example.yaml: it loads, it shows every key of the schema, and the values it
// shows are the defaults of the DEFAULTS table (so the example and the table cannot drift apart).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { ConfigSchema, DEFAULTS, loadConfig, parseConfigText } from '../../../src/config/index.ts';

const EXAMPLE = fileURLToPath(new URL('../../../config/ambassador.example.yaml', import.meta.url));
const exampleText = readFileSync(EXAMPLE, 'utf8');

type Path = (string | number)[];

/** Every key path the schema knows (list elements as index 0; a union is one leaf). */
function schemaKeyPaths(schema: unknown, prefix: Path = []): Path[] {
  const def = (schema as { def: Record<string, unknown> }).def;
  switch (def.type) {
    case 'object':
      return Object.entries(def.shape as Record<string, unknown>).flatMap(([key, child]) => [
        [...prefix, key],
        ...schemaKeyPaths(child, [...prefix, key]),
      ]);
    case 'prefault':
    case 'optional':
    case 'default':
      return schemaKeyPaths(def.innerType, prefix);
    case 'array':
      return schemaKeyPaths(def.element, [...prefix, 0]);
    default:
      return [];
  }
}

/** Leaf paths of the defaults table, skipping the per-entry tables (eachHost, credentials). */
function defaultLeafPaths(table: unknown, prefix: Path = []): Path[] {
  if (table === null || typeof table !== 'object' || Array.isArray(table)) return [prefix];
  return Object.entries(table).flatMap(([key, value]) =>
    prefix.join('.') === 'upstream' && (key === 'eachHost' || key === 'credentials') ? [] : defaultLeafPaths(value, [...prefix, key]),
  );
}

function getPath(value: unknown, path: Path): unknown {
  return path.reduce<unknown>((node, key) => (node as Record<string | number, unknown> | undefined)?.[key], value);
}

test('the example loads with an empty environment and with its variables set', () => {
  const plain = loadConfig({ file: EXAMPLE, env: {} });
  assert.equal(plain.upstream.hosts[0]?.host, '127.0.0.1');
  assert.equal(plain.listen.tls.cert, undefined);

  const env = {
    PGHOST: 'db.internal',
    APP_PASSWORD: 'example-pw',
    LISTEN_TLS_CERT: '/tls/server.crt',
    LISTEN_TLS_KEY: '/tls/server.key',
    UPSTREAM_DATABASE: 'app',
    UPSTREAM_USER: 'app',
    UPSTREAM_TLS_CA: '/tls/ca.crt',
    UPSTREAM_TLS_SERVER_NAME: 'db.internal',
    ADMIN_TOKEN: 'example-token',
  };
  const full = loadConfig({ file: EXAMPLE, env });
  assert.equal(full.upstream.hosts[0]?.host, 'db.internal');
  assert.equal(full.listen.tls.cert, '/tls/server.crt');
  assert.equal(full.upstream.tls.serverName, 'db.internal');
  assert.equal(full.admin.token, 'example-token');
  assert.deepEqual(full.upstream.credentials, { type: 'env', variable: 'UPSTREAM_PASSWORD' });
});

test('the example shows every key of the schema', () => {
  const doc = YAML.parseDocument(exampleText);
  const keyPaths = schemaKeyPaths(ConfigSchema);
  const names = keyPaths.map((path) => path.join('.'));
  for (const known of ['upstream.hosts.0.weight', 'listen.tls.minVersion', 'upstream.credentials', 'admin.token', 'shutdown.acceptGrace']) {
    assert.ok(names.includes(known), `schema walk missed ${known}`);
  }
  const missing = keyPaths
    .filter((path) => !doc.hasIn(path))
    .map((path) => path.join('.'));
  assert.deepEqual(missing, []);
});

test('the example shows the defaults of the DEFAULTS table', () => {
  const fromExample = loadConfig({ file: EXAMPLE, env: {} });
  const fromDefaults = parseConfigText('upstream:\n  hosts: [{ host: h }]\n', { env: {} });
  const paths = defaultLeafPaths(DEFAULTS);
  assert.ok(paths.length > 40, `only ${paths.length} default paths found`);
  for (const path of paths) {
    if (path.join('.') === 'clientAuth.users') continue; // the example shows one user
    assert.deepEqual(getPath(fromExample, path), getPath(fromDefaults, path), path.join('.'));
  }
  const host = fromExample.upstream.hosts[0];
  assert.deepEqual({ port: host?.port, role: host?.role, weight: host?.weight }, DEFAULTS.upstream.eachHost);
});

test('the example documents the credential types and their defaults', () => {
  for (const type of ['password', 'env', 'file', 'exec', 'aws-rds-iam', 'gcp-cloudsql-iam', 'azure-ad']) {
    assert.match(exampleText, new RegExp(`type: ${type}[ ,\\n]`), type);
  }
  assert.ok(exampleText.includes(`variable: ${DEFAULTS.upstream.credentials.env.variable}`));
  assert.ok(exampleText.includes(`timeout: ${DEFAULTS.upstream.credentials.exec.timeout}`));
  assert.ok(exampleText.includes(`scope: ${DEFAULTS.upstream.credentials['azure-ad'].scope}`));
  assert.ok(exampleText.includes(`refreshMargin: ${DEFAULTS.upstream.credentials['aws-rds-iam'].refreshMargin}`));
});

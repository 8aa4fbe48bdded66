// The target table: the ambassador's generated config (plain and read/write splitting), how many
// clients each proxy admits, and how many server connections the targets may hold at once (which
// sizes the cluster's max_connections).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requiredMaxConnections } from '../../../bench/cluster.ts';
import { ambassadorConfig, TARGETS, type TargetContext } from '../../../bench/targets.ts';

const CLUSTER = {
  users: { app: { user: 'app', password: 'upstream-pw' } },
  primary: { host: '127.0.0.1', port: 40001 },
  replicas: [{ host: '127.0.0.1', port: 40002 }, { host: '127.0.0.1', port: 40003 }],
};

function context(extra: Partial<TargetContext> = {}): Omit<TargetContext, 'log'> {
  return { clients: 256, poolSize: 20, cluster: CLUSTER, ...extra } as unknown as Omit<TargetContext, 'log'>;
}

interface Generated {
  listen: { maxClientConnections: number };
  upstream: { hosts: Array<{ host: string; port: number; role: string }> };
  pool: unknown;
  routing?: { readWriteSplit: boolean };
}

test('ambassador-split: the primary and both replicas with fixed roles, splitting on, the pool per host', () => {
  const config = ambassadorConfig(context(), 'pw', { pool: { mode: 'transaction', size: 20 }, split: true }) as unknown as Generated;
  assert.deepEqual(config.upstream.hosts, [
    { host: '127.0.0.1', port: 40001, role: 'primary' },
    { host: '127.0.0.1', port: 40002, role: 'replica' },
    { host: '127.0.0.1', port: 40003, role: 'replica' },
  ]);
  assert.deepEqual(config.routing, { readWriteSplit: true });
  assert.deepEqual(config.pool, { mode: 'transaction', size: 20 });

  const plain = ambassadorConfig(context(), 'pw', { pool: { mode: 'transaction', size: 20 } }) as unknown as Generated;
  assert.deepEqual(plain.upstream.hosts, [{ host: '127.0.0.1', port: 40001, role: 'primary' }], 'no replicas without split');
  assert.equal(plain.routing, undefined);
});

test('the ambassador admits max(1000, 2 x clients) unless told (the memory bench asks for clients + 100)', () => {
  const limit = (extra: Partial<TargetContext>): number =>
    (ambassadorConfig(context(extra), 'pw', { pool: { mode: 'transaction', size: 20 } }) as unknown as Generated).listen.maxClientConnections;
  assert.equal(limit({ clients: 256 }), 1000);
  assert.equal(limit({ clients: 600 }), 1200);
  assert.equal(limit({ clients: 10_000, maxClientConnections: 10_100 }), 10_100);
});

test('workload kinds: only ambassador-split and its partners (direct, the pgbouncers) run split work', () => {
  const kinds = Object.fromEntries(TARGETS.map((target) => [target.name, target.workloadKinds.join('+')]));
  assert.deepEqual(kinds, {
    direct: 'plain+split',
    ambassador: 'plain',
    'ambassador-txn': 'plain',
    'ambassador-txn-cached': 'plain',
    'ambassador-split': 'split',
    pgbouncer: 'plain+split',
    'pgbouncer-session': 'plain+split',
    'node-pipe': 'plain',
    'node-pool': 'plain',
  });
});

test('server connections at 256 clients and pool 20, and the max_connections they need together', () => {
  const held = Object.fromEntries(TARGETS.map((target) => [target.name, target.serverConnections({ clients: 256, poolSize: 20 })]));
  assert.deepEqual(held, {
    direct: 256, ambassador: 256, 'ambassador-txn': 20, 'ambassador-txn-cached': 20, 'ambassador-split': 20, pgbouncer: 20, 'pgbouncer-session': 256, 'node-pipe': 256,
    'node-pool': 20,
  });
  // 1144 + 40 spare, rounded up to a hundred.
  assert.equal(requiredMaxConnections(Object.values(held)), 1200);
  assert.equal(requiredMaxConnections([4, 20, 20]), 300, 'never below the cluster default');
});

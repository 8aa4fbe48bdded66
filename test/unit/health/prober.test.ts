// BackendProber over fake connections: the probe connection is kept between probes, dropped by
// forget(), and one that finishes connecting after its host was forgotten (removed by a reload
// while its probe connected) is closed instead of kept.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackendConnection } from '../../../src/backend/connection.ts';
import { BackendProber } from '../../../src/health/prober.ts';
import { entry } from './health-fakes.ts';

const P = 'db1:5432';

interface FakeProbeConnection {
  isClosed: boolean;
  close(): void;
  query(): Promise<Array<Array<string | null>>>;
}

function fakeConnection(): FakeProbeConnection {
  const connection: FakeProbeConnection = {
    isClosed: false,
    close: () => void (connection.isClosed = true),
    query: async () => [['f', '0/1', '0']],
  };
  return connection;
}

test('the probe connection is kept between probes and dropped by forget()', async () => {
  const opened: FakeProbeConnection[] = [];
  const prober = new BackendProber(async () => {
    const connection = fakeConnection();
    opened.push(connection);
    return connection as unknown as BackendConnection;
  });
  await prober.probe(entry(P), 100);
  await prober.probe(entry(P), 100);
  assert.equal(opened.length, 1);
  prober.forget(entry(P));
  assert.equal(opened[0]!.isClosed, true);
  await prober.probe(entry(P), 100);
  assert.equal(opened.length, 2);
  prober.close();
});

test('a probe connection that lands after its host was forgotten is closed, not kept', async () => {
  const opened: FakeProbeConnection[] = [];
  let land: () => void = () => {};
  const prober = new BackendProber(
    () =>
      new Promise((resolve) => {
        land = () => {
          const connection = fakeConnection();
          opened.push(connection);
          resolve(connection as unknown as BackendConnection);
        };
      }),
  );
  const probe = prober.probe(entry(P), 100);
  prober.forget(entry(P));
  land();
  await assert.rejects(probe, /dropped while it connected/);
  assert.equal(opened[0]!.isClosed, true);
  prober.close();
});

// Helpers for read/write splitting tests: an ambassador config in front of a whole cluster (the
// primary and every replica, roles discovered by the health loop), "where did this run" probes
// (pg_is_in_recovery() and inet_server_port() through the ambassador), waits for replicas to
// replay the primary's WAL (direct superuser connections), and the router's health snapshot.
//
// Every server of a test cluster listens on 127.0.0.1 with its own port, so the port a statement
// reports names the server that ran it.

import assert from 'node:assert/strict';
import pg from 'pg';
import type { HostState } from '../../src/health/monitor.ts';
import type { TestAmbassador } from './ambassador.ts';
import { withClient } from './pooling.ts';
import { eventually, type PgServerInfo, type Topology } from './topology.ts';

type ConfigObject = Record<string, unknown>;

export interface RoutingOptions {
  /** Merged over `routing: { readWriteSplit: true }`. */
  routing?: ConfigObject;
  /** Merged over `pool: { mode: 'transaction', size: 4 }`. */
  pool?: ConfigObject;
  /** Replica weights by index in topology.replicas (default 1 each). */
  replicaWeights?: number[];
}

/** Config overrides: every server of the topology as an upstream host with role 'auto'. */
export function routingOverrides(topology: Topology, options: RoutingOptions = {}): ConfigObject {
  const hosts = [
    { host: topology.primary.host, port: topology.primary.port, role: 'auto', weight: 1 },
    ...topology.replicas.map((replica, index) => ({
      host: replica.host,
      port: replica.port,
      role: 'auto',
      weight: options.replicaWeights?.[index] ?? 1,
    })),
  ];
  return {
    upstream: { hosts },
    pool: { mode: 'transaction', size: 4, ...options.pool },
    routing: { readWriteSplit: true, ...options.routing },
    health: { interval: '200ms', timeout: '1s', failureThreshold: 1 },
    logging: { level: 'debug' },
  };
}

/** The router's health snapshot (what host choice reads). */
export function hostsOf(amb: TestAmbassador): readonly HostState[] {
  return amb.ambassador.hosts();
}

/** The snapshot entry of one server (by port). */
export function hostOf(amb: TestAmbassador, server: PgServerInfo): HostState {
  const id = `${server.host}:${server.port}`;
  const host = hostsOf(amb).find((entry) => entry.id === id);
  assert.ok(host, `no host ${id} in ambassador.hosts(): ${describeHosts(amb)}`);
  return host;
}

export function describeHosts(amb: TestAmbassador): string {
  return JSON.stringify(hostsOf(amb), (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
}

/** Where a statement ran, as the server itself reports it. */
export interface ServerSeen {
  port: number;
  recovery: boolean;
}

/** Columns naming the server that runs the statement. */
export const WHERE = 'pg_is_in_recovery() AS recovery, inet_server_port() AS port';

export function seen(row: { port?: unknown; recovery?: unknown } | undefined): ServerSeen {
  assert.ok(row, 'the statement returned no row');
  return { port: Number(row.port), recovery: row.recovery === true };
}

/** Runs `SELECT <WHERE>` in the simple protocol. */
export async function whereRan(client: pg.Client): Promise<ServerSeen> {
  return seen((await client.query(`SELECT ${WHERE}`)).rows[0]);
}

/** The ports of the cluster's servers. */
export function portsOf(topology: Topology): { primary: number; replicas: number[] } {
  return { primary: topology.primary.port, replicas: topology.replicas.map((replica) => replica.port) };
}

/** Asserts every observation came from a replica (in recovery, on a replica port). */
export function assertAllOnReplicas(topology: Topology, observed: ServerSeen[], what: string): void {
  const { replicas } = portsOf(topology);
  const stray = observed.filter((entry) => !entry.recovery || !replicas.includes(entry.port));
  assert.deepEqual(stray, [], `${what}: ran off the replicas (${replicas.join(', ')})`);
}

/** Asserts every observation came from the primary (not in recovery, on the primary's port). */
export function assertAllOnPrimary(topology: Topology, observed: ServerSeen[], what: string): void {
  const { primary } = portsOf(topology);
  const stray = observed.filter((entry) => entry.recovery || entry.port !== primary);
  assert.deepEqual(stray, [], `${what}: ran off the primary (${primary})`);
}

/** A superuser connection to one server of the topology. */
export function superuserOn(topology: Topology, server: PgServerInfo, database = 'postgres'): pg.ClientConfig {
  return {
    host: server.host,
    port: server.port,
    user: topology.superuser.user,
    password: topology.superuser.password,
    database,
    connectionTimeoutMillis: 10_000,
  };
}

/** The primary's current WAL position (text, e.g. '0/16B3748'). */
export async function primaryLsn(topology: Topology): Promise<string> {
  return withClient(superuserOn(topology, topology.primary), async (client) =>
    String((await client.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn));
}

/** Waits until each of `replicas` has replayed the primary's WAL as of now (or of `lsn`). */
export async function waitForReplay(
  topology: Topology,
  options: { replicas?: PgServerInfo[]; lsn?: string; timeoutMs?: number } = {},
): Promise<void> {
  const target = options.lsn ?? (await primaryLsn(topology));
  for (const replica of options.replicas ?? topology.replicas) {
    await withClient(superuserOn(topology, replica), (client) =>
      eventually(
        async () => {
          const { rows } = await client.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [target]);
          return rows[0].done === true ? true : undefined;
        },
        { timeoutMs: options.timeoutMs ?? 20_000, intervalMs: 25, what: `${replica.name} to replay up to ${target}` },
      ),
    );
  }
}

/** '0/16B3748' -> 0x16B3748n. */
export function parseLsnText(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  assert.ok(match, `not an LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/**
 * Log lines of the 25006 safety net: a replica refused a statement as read-only and it was re-run
 * on the primary. A statement the classifier routed right never produces one.
 */
export function safetyNetLines(amb: TestAmbassador): Array<Record<string, unknown>> {
  return amb.logs().filter((line) => /refused .*read-only/i.test(String(line.msg)));
}

/** A SQLSTATE-carrying error from pg or postgres.js. */
export function sqlstateOf(error: unknown): string | undefined {
  return (error as { code?: unknown }).code === undefined ? undefined : String((error as { code: unknown }).code);
}

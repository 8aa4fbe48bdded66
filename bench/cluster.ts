// The bench's Postgres: the project's throwaway cluster (src/demo/cluster.ts), with 2 streaming
// replicas when split work is selected, and max_connections raised so that every target's pool can
// hold its server connections at once next to direct pgbench's clients (targets stay up for the
// whole bench, and pools keep idle connections: 256 direct clients + a 256-connection session pool
// of the ambassador + one of pgbouncer-session + the transaction pools exceed the cluster's 300).
//
// The primary gets max_connections through startCluster's primaryConf and the replicas the same
// through replicaConf (a hot standby refuses to run with fewer connections than its primary).
// After pgbench -i, split work waits until both replicas have replayed the primary's WAL, so
// reads there see the tables.

import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { startCluster, type LocalCluster } from '../src/demo/cluster.ts';

/** The cluster's own default (src/demo/pg-conf.ts), below which we never go. */
const CLUSTER_MAX_CONNECTIONS = 300;
/** Superuser connections of the bench, the health probes of the ambassadors, reserved slots. */
const SPARE_CONNECTIONS = 40;

/** max_connections for targets that together hold `serverConnections` at most. */
export function requiredMaxConnections(serverConnections: readonly number[]): number {
  const needed = serverConnections.reduce((sum, count) => sum + count, 0) + SPARE_CONNECTIONS;
  return Math.max(CLUSTER_MAX_CONNECTIONS, Math.ceil(needed / 100) * 100);
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}

export async function startBenchCluster(replicas: number, maxConnections: number, log: (line: string) => void): Promise<LocalCluster> {
  const settings = { max_connections: String(maxConnections) };
  const cluster = await startCluster({ replicas, log, primaryConf: settings, replicaConf: settings });
  try {
    const [current] = await cluster.primary.query<{ max_connections: string }>('SHOW max_connections');
    if (Number(current?.max_connections) < maxConnections) throw new Error(`max_connections is ${current?.max_connections}, wanted ${maxConnections}`);
    return cluster;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

/** Waits until every replica has replayed all WAL the primary has written so far. */
export async function waitForReplicas(cluster: LocalCluster, log: (line: string) => void): Promise<void> {
  if (cluster.replicas.length === 0) return;
  const [row] = await cluster.primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const lsn = row!.lsn;
  for (const replica of cluster.replicas) {
    await waitFor(`${replica.name} replaying up to ${lsn}`, 120_000, async () => {
      const [state] = await replica.query<{ caught_up: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS caught_up', [lsn]);
      return state?.caught_up === true;
    });
  }
  log(`cluster: ${cluster.replicas.length} replicas have replayed up to ${lsn}`);
}

/** Transactions the replicas have run so far (pg_stat_database, all databases): a check that split reads reach them. */
export async function replicaTransactions(cluster: LocalCluster): Promise<number> {
  let total = 0;
  for (const replica of cluster.replicas) {
    const [row] = await replica.query<{ total: string }>('SELECT sum(xact_commit + xact_rollback)::text AS total FROM pg_stat_database');
    total += Number(row?.total ?? 0);
  }
  return total;
}

/** What a bench or soak report says about where it ran (no load averages: each caller has its own). */
export interface HostFacts {
  date: string;
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  postgres: string;
  gitCommit: string | null;
}

export async function hostFacts(cluster: LocalCluster): Promise<HostFacts> {
  const [row] = await cluster.primary.query<{ server_version: string }>('SHOW server_version');
  let gitCommit: string | null = null;
  try {
    const root = path.resolve(import.meta.dirname, '..');
    gitCommit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  return {
    date: new Date().toISOString(),
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: os.totalmem() / 2 ** 30,
    kernel: os.release(),
    node: process.version,
    postgres: row?.server_version ?? String(cluster.binaries.version),
    gitCommit,
  };
}

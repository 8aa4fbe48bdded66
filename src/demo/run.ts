// `pg-ambassador demo`: a throwaway primary + one streaming replica (see cluster.ts) with the
// ambassador in front on 127.0.0.1:<port>, for trying it out from a terminal.
//
// This is CLI output, so it prints to stdout/stderr directly; the ambassador's own logs go to
// stderr at level warn so the terminal stays readable. Exit codes: 0 after Ctrl-C/SIGTERM (the
// ambassador drains, the cluster is stopped by pid and its files removed), 1 when the demo
// cannot start (port taken, no PostgreSQL binaries, ...), 2 for an invalid port. A second
// signal during shutdown exits at once with 1 (the cluster's reaper still kills its servers).

import net from 'node:net';
import YAML from 'yaml';
import { startAmbassador, type Ambassador } from '../app.ts';
import { parseConfigText, type Config } from '../config/index.ts';
import { createLogger } from '../lib/logger.ts';
import { startCluster, type LocalCluster } from './cluster.ts';

const HOST = '127.0.0.1';
/** The login clients use against the ambassador (not the cluster's own, random, password). */
export const DEMO_USER = 'app';
export const DEMO_PASSWORD = 'app';
const DEMO_DATABASE = 'app';
const EXAMPLE_PORT = 6432;

export interface DemoOptions {
  port: number;
}

function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

function err(line: string): void {
  process.stderr.write(`pg-ambassador demo: ${line}\n`);
}

/** Whether `port` can be bound on HOST right now (a quick check before starting Postgres). */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ host: HOST, port, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

function isAddressInUse(error: unknown): boolean {
  const e = error as { code?: string; cause?: { code?: string } };
  return e?.code === 'EADDRINUSE' || e?.cause?.code === 'EADDRINUSE';
}

function reportPortTaken(port: number): void {
  const other = port === EXAMPLE_PORT ? EXAMPLE_PORT + 1 : EXAMPLE_PORT;
  err(`port ${port} on ${HOST} is already in use (a local PostgreSQL, or another demo?).`);
  err(`choose another port, e.g.: npm run demo -- --port ${other}   (or: pg-ambassador demo --port ${other})`);
}

/**
 * The ambassador's config: scram clients (app/app), primary + replica upstream (roles found by
 * the health loop), verify-full TLS, transaction pooling with read/write splitting and
 * read-your-writes.
 */
export function demoConfig(cluster: LocalCluster, port: number): Config {
  const hosts = cluster.servers().map((server) => ({ host: server.host, port: server.port, role: 'auto' }));
  const input = {
    listen: { host: HOST, port },
    clientAuth: { method: 'scram-sha-256', users: [{ name: DEMO_USER, password: DEMO_PASSWORD }] },
    upstream: {
      hosts,
      credentials: { type: 'password', password: cluster.users.app.password },
      tls: { mode: 'verify-full', ca: cluster.certs.caCert, serverName: 'localhost' },
    },
    pool: { mode: 'transaction' },
    routing: { readWriteSplit: true, readYourWrites: 'lsn' },
    shutdown: { timeout: '5s' },
    logging: { level: 'warn' },
  };
  return parseConfigText(YAML.stringify(input), { file: '<demo config>', env: {} });
}

function printBanner(cluster: LocalCluster, ambassador: Ambassador): void {
  const port = ambassador.address.port;
  const url = `postgresql://${DEMO_USER}:${DEMO_PASSWORD}@${HOST}:${port}/${DEMO_DATABASE}`;
  out();
  out(`pg-ambassador demo is running: ambassador on ${HOST}:${port} (user ${DEMO_USER}, password ${DEMO_PASSWORD}, scram-sha-256)`);
  out();
  out(`connect with: PGPASSWORD=${DEMO_PASSWORD} psql "host=${HOST} port=${port} user=${DEMO_USER} dbname=${DEMO_DATABASE}"`);
  out(`  DATABASE_URL=${url}`);
  out();
  out(`direct to the servers (user ${cluster.users.app.user}, password ${cluster.users.app.password}):`);
  for (const server of cluster.servers()) {
    out(`  ${server.name.padEnd(9)} ${server.host}:${server.port} pid ${server.pid} (${server.role})`);
  }
  out(`  files     ${cluster.baseDir} (removed on exit)`);
  out();
  out('Press Ctrl-C to stop.');
}

/**
 * SIGINT/SIGTERM: drain the ambassador (if it started), stop the cluster, exit 0.
 * A second signal exits at once with 1.
 */
function handleDemoSignals(cluster: LocalCluster, ambassador: () => Ambassador | undefined): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      err(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    out(`\n${signal}: stopping the ambassador and the cluster...`);
    void (async () => {
      let code = 0;
      try {
        await ambassador()?.shutdown();
      } catch (error) {
        err(`ambassador shutdown failed: ${(error as Error).message}`);
        code = 1;
      }
      try {
        await cluster.stop();
        out(`stopped; removed ${cluster.baseDir}`);
      } catch (error) {
        err(`stopping the cluster failed: ${(error as Error).message}`);
        code = 1;
      }
      process.exit(code);
    })();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Starts the cluster and the ambassador; returns once they run (the process stays up until a signal). */
export async function runDemo({ port }: DemoOptions): Promise<void> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    err(`invalid port ${JSON.stringify(String(port))}: expected an integer 1-65535, e.g. --port ${EXAMPLE_PORT}`);
    process.exit(2);
  }
  if (!(await portIsFree(port))) {
    reportPortTaken(port);
    process.exit(1);
  }
  out('pg-ambassador demo: starting a local PostgreSQL primary and one streaming replica...');
  let cluster: LocalCluster;
  try {
    cluster = await startCluster({ replicas: 1, log: (line) => out(`  ${line}`) });
  } catch (error) {
    err(`could not start the local cluster: ${(error as Error).message}`);
    process.exit(1);
  }
  let ambassador: Ambassador | undefined;
  handleDemoSignals(cluster, () => ambassador);
  try {
    const logger = createLogger({ level: 'warn', destination: process.stderr });
    ambassador = await startAmbassador(demoConfig(cluster, port), { logger, env: {} });
  } catch (error) {
    if (isAddressInUse(error)) reportPortTaken(port);
    else err(`could not start the ambassador: ${(error as Error).message}`);
    await cluster.stop().catch(() => {});
    process.exit(1);
  }
  printBanner(cluster, ambassador);
}

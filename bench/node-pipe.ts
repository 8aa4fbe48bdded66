// The floor of any proxy written on Node's net streams: a byte pipe with no parsing, no pooling
// and no authentication of its own (one server connection per client, for the client's whole
// session; the client logs in to Postgres through it). It exists to be measured: whatever CPU it
// spends per transaction is what Node's sockets cost before a proxy does any work, so the
// ambassador / node-pipe ratio is what the ambassador itself adds, and node-pipe / pgbouncer is
// how far Node is behind C before anything is added.
//
// It does what the ambassador's sockets do and nothing more: TCP_NODELAY on both sides, bytes
// written as they arrive, backpressure through pipe(). It runs as its own process (`node --import
// tsx bench/node-pipe.ts <host> <port>`, started by spawnNodePipe) so its CPU and RSS are read
// from /proc like every other target's, and prints "listening <port>" once it accepts
// connections (the OS picks the port).

import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { awaitOutput, supervise, targetLifecycle } from './child.ts';
import type { RunningTarget, TargetContext } from './targets.ts';

/** Listens on 127.0.0.1 (an OS-chosen port) and pipes every connection to host:port. */
export function startNodePipe(host: string, port: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port, noDelay: true });
    client.setNoDelay(true);
    client.pipe(upstream).pipe(client);
    // Either side ending or failing ends both; errors are the peer going away, nothing to report.
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.once('close', end).on('error', end);
    upstream.once('close', end).on('error', end);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** The bench target: the pipe in front of the primary, as a child process. */
export async function spawnNodePipe(context: TargetContext, name: string): Promise<RunningTarget> {
  const { cluster, log } = context;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-ambassador-bench-node-pipe-'));
  const child = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, cluster.primary.host, String(cluster.primary.port)], {
    cwd: path.resolve(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  const supervised = supervise(child, name, dir, log);
  const port = await awaitOutput(child, supervised, name, (output) => {
    const match = /^listening (\d+)$/m.exec(output);
    return match === null ? null : Number(match[1]);
  });
  const details = 'bare Node.js byte pipe: no parsing, no pooling, one server connection per client';
  log(`${name}: pid ${child.pid} listening on 127.0.0.1:${port} (${details})`);
  const { user, password } = cluster.users.app;
  return {
    name,
    // The client logs in to Postgres itself, through the pipe: the upstream user and password.
    endpoint: { host: '127.0.0.1', port, user, password, database: cluster.database },
    pid: child.pid!,
    details,
    ...targetLifecycle(supervised, name),
  };
}

if (process.argv[1] === import.meta.filename) {
  const [host, port] = process.argv.slice(2);
  if (host === undefined || !/^\d+$/.test(port ?? '')) {
    process.stderr.write('usage: node --import tsx bench/node-pipe.ts <upstream host> <upstream port>\n');
    process.exit(2);
  }
  const server = await startNodePipe(host, Number(port));
  const address = server.address() as net.AddressInfo;
  process.stdout.write(`listening ${address.port}\n`);
  process.once('SIGTERM', () => process.exit(0));
}

// A byte pipe written on Node's net streams, with no parsing, no pooling and no authentication of
// its own (one server connection per client, for the client's whole session; the client logs in
// to Postgres through it). It exists to be measured: whatever CPU it spends per transaction is what
// Node's net streams cost before a proxy does any work, and node-pipe / pgbouncer how far they
// start behind C. The ambassador does not read or write through streams (src/lib/wire.ts), so the
// floor to hold it to is node-pool (node-pool.ts): a pooler on the ambassador's own sockets.
//
// TCP_NODELAY on both sides, bytes written as they arrive, backpressure through pipe(). It runs as
// its own process (`node --import tsx bench/node-pipe.ts <host> <port>`, started by spawnNodePipe)
// and prints "listening <port>" once it accepts connections (the OS picks the port).

import net from 'node:net';

import { spawnScriptTarget } from './child.ts';
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

/** The bench target: the pipe in front of the primary, as a child process (the client logs in to Postgres through it). */
export function spawnNodePipe(context: TargetContext, name: string): Promise<RunningTarget> {
  const { host, port } = context.cluster.primary;
  return spawnScriptTarget(context, {
    name,
    script: import.meta.filename,
    args: [host, String(port)],
    details: 'bare Node.js byte pipe: no parsing, no pooling, one server connection per client',
  });
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

// A small TCP fault proxy for integration tests: listens on 127.0.0.1 (OS-chosen port) and
// forwards every accepted connection to a target, with a mode switchable at run time:
// - 'pass'      forwards bytes both ways as they come;
// - 'blackhole' a network partition: nothing is forwarded in either direction (reading stops, so
//               the peers' TCP windows fill as they would with dropped packets), connections stay
//               open, and new connections are accepted but never reach the target. Back in 'pass'
//               (or 'latency') the held bytes flow again and held new connections are put through,
//               as when a partition heals;
// - 'latency'   every chunk, both ways, is delivered `ms` after it arrived (order kept);
// - 'refuse'    stops listening (new connects get ECONNREFUSED) and resets every open connection.
//               Any other mode listens again on the same port.
// close() ends everything. Every accepted connection is recorded with its timestamps.
//
// Per direction, chunks wait in a queue with a release time; `pump` delivers the due ones unless
// the proxy is blackholed, and pauses the reading side while the writing side is full.

import net from 'node:net';

export type FaultMode = { kind: 'pass' } | { kind: 'blackhole' } | { kind: 'latency'; ms: number } | { kind: 'refuse' };

export const pass: FaultMode = { kind: 'pass' };
export const blackhole: FaultMode = { kind: 'blackhole' };
export const refuse: FaultMode = { kind: 'refuse' };
export function latency(ms: number): FaultMode {
  return { kind: 'latency', ms };
}

export interface ProxiedConnection {
  /** performance.now() when the proxy accepted the client side. */
  acceptedAt: number;
  /** Date.now() at the same moment (for logs and cross-process comparisons). */
  acceptedWallAt: number;
  /** The mode at accept time. */
  modeAtAccept: FaultMode['kind'];
  /** performance.now() when the target side connected (null while held or if it never did). */
  upstreamConnectedAt: number | null;
  /** performance.now() when both sides were closed (null while open). */
  closedAt: number | null;
  /** Bytes forwarded client -> target and target -> client. */
  bytesUp: number;
  bytesDown: number;
}

interface Direction {
  from: net.Socket;
  to: net.Socket;
  queue: Array<{ chunk: Buffer; releaseAt: number }>;
  timer: NodeJS.Timeout | null;
  /** The writing side reported a full buffer; waiting for 'drain'. */
  blocked: boolean;
  count: (bytes: number) => void;
}

interface Pair {
  record: ProxiedConnection;
  client: net.Socket;
  upstream: net.Socket | null;
  directions: Direction[];
}

export interface FaultProxyOptions {
  target: { host: string; port: number };
  mode?: FaultMode;
}

export class FaultProxy {
  readonly target: { host: string; port: number };
  readonly connections: ProxiedConnection[] = [];
  private currentMode: FaultMode;
  private server: net.Server | null = null;
  private readonly pairs = new Set<Pair>();
  private listenPort = 0;
  private closed = false;

  private constructor(options: FaultProxyOptions) {
    this.target = options.target;
    this.currentMode = options.mode ?? pass;
  }

  /** Starts a proxy in front of `target`, listening on 127.0.0.1 at an OS-chosen port. */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(options);
    if (proxy.currentMode.kind !== 'refuse') await proxy.listen();
    else proxy.listenPort = await reservePort();
    return proxy;
  }

  get host(): string {
    return '127.0.0.1';
  }

  get port(): number {
    return this.listenPort;
  }

  get mode(): FaultMode {
    return this.currentMode;
  }

  /** Connections currently open (both sides or a held client side). */
  get openConnections(): number {
    return this.pairs.size;
  }

  /** Switches mode; resolves once the listening state matches it. */
  async setMode(mode: FaultMode): Promise<void> {
    if (this.closed) throw new Error('fault proxy is closed');
    this.currentMode = mode;
    if (mode.kind === 'refuse') {
      // Reset first: server.close() calls back only once every accepted connection has closed.
      for (const pair of [...this.pairs]) this.reset(pair);
      await this.stopListening();
      return;
    }
    if (this.server === null) await this.listen();
    for (const pair of [...this.pairs]) {
      if (pair.upstream === null && mode.kind !== 'blackhole') this.connectUpstream(pair);
      for (const direction of pair.directions) this.pump(direction);
    }
  }

  /** Stops listening and destroys every connection. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const pair of [...this.pairs]) this.destroy(pair);
    await this.stopListening();
  }

  private listen(): Promise<void> {
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    return new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: this.listenPort }, () => {
        server.off('error', reject);
        server.on('error', () => {});
        this.listenPort = (server.address() as net.AddressInfo).port;
        this.server = server;
        resolve();
      });
    });
  }

  private stopListening(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return Promise.resolve();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    if (this.closed || this.currentMode.kind === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    const record: ProxiedConnection = {
      acceptedAt: performance.now(),
      acceptedWallAt: Date.now(),
      modeAtAccept: this.currentMode.kind,
      upstreamConnectedAt: null,
      closedAt: null,
      bytesUp: 0,
      bytesDown: 0,
    };
    this.connections.push(record);
    const pair: Pair = { record, client, upstream: null, directions: [] };
    this.pairs.add(pair);
    client.setNoDelay(true);
    client.on('error', () => this.destroy(pair));
    client.on('close', () => this.destroy(pair));
    // Hold the client's bytes (the kernel buffers them) until the target side exists.
    client.pause();
    if (this.currentMode.kind !== 'blackhole') this.connectUpstream(pair);
  }

  private connectUpstream(pair: Pair): void {
    const upstream = net.connect({ host: this.target.host, port: this.target.port });
    pair.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('error', () => this.destroy(pair));
    upstream.on('close', () => this.destroy(pair));
    upstream.once('connect', () => {
      pair.record.upstreamConnectedAt = performance.now();
      pair.directions = [
        this.direction(pair.client, upstream, (n) => (pair.record.bytesUp += n)),
        this.direction(upstream, pair.client, (n) => (pair.record.bytesDown += n)),
      ];
      for (const direction of pair.directions) this.pump(direction);
    });
  }

  private direction(from: net.Socket, to: net.Socket, count: (bytes: number) => void): Direction {
    const direction: Direction = { from, to, queue: [], timer: null, blocked: false, count };
    from.on('data', (chunk: Buffer) => {
      const delay = this.currentMode.kind === 'latency' ? this.currentMode.ms : 0;
      const last = direction.queue.at(-1)?.releaseAt ?? 0;
      direction.queue.push({ chunk, releaseAt: Math.max(performance.now() + delay, last) });
      this.pump(direction);
    });
    from.on('end', () => {
      // Half-close once everything queued has gone out (checked in pump).
      direction.queue.push({ chunk: Buffer.alloc(0), releaseAt: direction.queue.at(-1)?.releaseAt ?? 0 });
      this.pump(direction);
    });
    to.on('drain', () => {
      direction.blocked = false;
      this.pump(direction);
    });
    return direction;
  }

  /** Delivers the due chunks of one direction, unless blackholed or the writer is full. */
  private pump(direction: Direction): void {
    if (direction.timer) {
      clearTimeout(direction.timer);
      direction.timer = null;
    }
    if (this.currentMode.kind === 'blackhole' || this.currentMode.kind === 'refuse') {
      direction.from.pause();
      return;
    }
    const now = performance.now();
    while (direction.queue.length > 0 && !direction.blocked) {
      const head = direction.queue[0]!;
      if (head.releaseAt > now) break;
      direction.queue.shift();
      if (head.chunk.length === 0) {
        direction.to.end();
        continue;
      }
      direction.count(head.chunk.length);
      if (!direction.to.write(head.chunk)) direction.blocked = true;
    }
    if (direction.blocked) direction.from.pause();
    else if (!direction.from.destroyed) direction.from.resume();
    const next = direction.queue[0];
    if (next && !direction.blocked) {
      direction.timer = setTimeout(() => this.pump(direction), Math.max(0, next.releaseAt - performance.now()));
    }
  }

  private reset(pair: Pair): void {
    pair.client.resetAndDestroy();
    pair.upstream?.resetAndDestroy();
    this.destroy(pair);
  }

  private destroy(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    for (const direction of pair.directions) if (direction.timer) clearTimeout(direction.timer);
    pair.client.destroy();
    pair.upstream?.destroy();
    pair.record.closedAt = performance.now();
  }
}

/** A port that nothing listens on right now (for a proxy created in 'refuse' mode). */
async function reservePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A server that accepts every TCP connection and destroys it at once, timestamping each attempt. */
export interface RefusingServer {
  host: string;
  port: number;
  /** performance.now() of every accepted connection, in order. */
  attempts: number[];
  close(): Promise<void>;
}

export async function startRefusingServer(): Promise<RefusingServer> {
  const attempts: number[] = [];
  const server = net.createServer((socket) => {
    attempts.push(performance.now());
    socket.on('error', () => {});
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  return {
    host: '127.0.0.1',
    port: (server.address() as net.AddressInfo).port,
    attempts,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

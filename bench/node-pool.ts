// The floor of a pooling proxy written in Node: transaction pooling and nothing else. It uses
// the ambassador's own socket layer (src/lib/wire.ts) and server login (BackendConnection), keeps
// --pool-size server connections, cuts each client's bytes into requests at Query or Sync, and
// gives a request a free server connection (or queues it); the server's answer goes back whole
// up to ReadyForQuery, whose status says whether the client keeps the connection (inside a
// transaction block) or lets the next request have it.
//
// What it leaves out is what the ambassador adds: client authentication (every login is
// accepted), prepared-statement names (so no -M prepared), session state, routing, health checks,
// retries, limits, metrics and logs. ambassador-txn / node-pool is therefore what those features
// cost per transaction, and node-pool / pgbouncer how far a pooler on Node starts behind C;
// node-pipe (streams, no pooling) answers a different question, the cost of Node's net streams.
//
// It runs as its own process (`node --import tsx bench/node-pool.ts <host> <port> <pool size>`,
// the upstream user, password and database in NODE_POOL_USER, NODE_POOL_PASSWORD and
// NODE_POOL_DATABASE) so its CPU and RSS are read from /proc like every other target's, and
// prints "listening <port>" once it accepts connections (the OS picks the port).

import net from 'node:net';

import { BackendConnection, SERVER_MAX_MESSAGE, type ServerSink } from '../src/backend/connection.ts';
import { TcpConnector } from '../src/backend/connector.ts';
import { Fifo } from '../src/lib/fifo.ts';
import { openWire, type Wire } from '../src/lib/wire.ts';
import { encodeAuthenticationOk, encodeBackendKeyData, encodeErrorResponse, encodeParameterStatus, encodeReadyForQuery } from '../src/protocol/backend.ts';
import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE } from '../src/protocol/startup.ts';
import { spawnScriptTarget } from './child.ts';
import type { RunningTarget, TargetContext } from './targets.ts';

export interface NodePoolUpstream {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

const QUERY = 0x51; // 'Q'
const SYNC = 0x53; // 'S'
const TERMINATE = 0x58; // 'X'
const READY_FOR_QUERY = 0x5a; // 'Z'
const IDLE = 0x49; // 'I'
/** A startup packet longer than this is not one (libpq's are a few hundred bytes). */
const MAX_STARTUP = 10_000;
const NOTHING = Buffer.alloc(0);

/** One server connection of the pool, and the client whose request it answers now. */
class Server implements ServerSink {
  holder: Client | null = null;
  /**
   * The start of a message the last chunk ended in, kept until the message is whole (select-only's
   * answers are small; a large row would be copied again with every chunk).
   */
  private partial: Buffer = NOTHING;

  constructor(
    readonly conn: BackendConnection,
    private readonly pool: NodePool,
  ) {
    conn.attach(this);
  }

  onServerData(chunk: Buffer): void {
    const data = this.partial.length === 0 ? chunk : Buffer.concat([this.partial, chunk]);
    let start = 0;
    let at = 0;
    // Only message boundaries matter: the bytes go on as they came, cut after each ReadyForQuery.
    while (data.length - at >= 5) {
      const length = data.readInt32BE(at + 1);
      if (length < 4) return void this.conn.close(true); // not Postgres: the close discards it
      const end = at + 1 + length;
      if (end > data.length) break;
      if (data[at] === READY_FOR_QUERY) {
        const holder = this.holder;
        holder?.send(data.subarray(start, end));
        start = end;
        this.answered(holder, data[end - 1] === IDLE);
      }
      at = end;
    }
    // Whole messages before the cut go now; a message still arriving is kept until it is whole.
    if (at > start) this.holder?.send(data.subarray(start, at));
    this.partial = at < data.length ? data.subarray(at) : NOTHING;
  }

  /** A request's answer ended; outside a transaction block the connection serves the next request. */
  private answered(holder: Client | null, idle: boolean): void {
    if (holder === null || holder.gone) {
      this.holder = null;
      if (idle) this.pool.release(this);
      else this.pool.discard(this); // a transaction its client left open
      return;
    }
    holder.answered(idle);
  }

  onServerDrain(): void {
    this.holder?.wire.resume();
  }

  onServerClose(): void {
    this.holder?.lost();
    this.pool.discard(this);
  }
}

/** One client connection: its requests go out one at a time, in order. */
class Client {
  readonly wire: Wire;
  gone = false;
  private loggedIn = false;
  private pending: Buffer = NOTHING;
  private readonly requests = new Fifo<Buffer>();
  private server: Server | null = null;
  /** A request of this client is on a server now (or waiting for one). */
  private busy = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly pool: NodePool,
  ) {
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    socket.once('close', () => this.closed());
    this.wire = openWire(socket, { onData: (chunk) => this.onData(chunk), onDrain: () => this.server?.conn.resume() });
  }

  send(bytes: Buffer): void {
    if (!this.gone && !this.wire.write(bytes)) this.server?.conn.pause();
  }

  private onData(chunk: Buffer): void {
    let data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (!this.loggedIn) {
      const rest = this.startup(data);
      if (rest === null) return;
      data = rest;
    }
    let start = 0;
    let at = 0;
    while (data.length - at >= 5) {
      const type = data[at]!;
      const length = data.readInt32BE(at + 1);
      if (length < 4) return void this.socket.destroy();
      const end = at + 1 + length;
      if (end > data.length) break;
      at = end;
      if (type === TERMINATE) return void this.socket.destroy();
      if (type === QUERY || type === SYNC) {
        this.requests.push(data.subarray(start, end));
        start = end;
      }
    }
    this.pending = start < data.length ? data.subarray(start) : NOTHING;
    this.next();
  }

  /** The startup phase: bytes after the StartupMessage, or null while it is not whole (or the connection ended). */
  private startup(data: Buffer): Buffer | null {
    for (;;) {
      if (data.length < 8) break;
      const length = data.readInt32BE(0);
      if (length < 8 || length > MAX_STARTUP) {
        this.socket.destroy();
        return null;
      }
      if (data.length < length) break;
      const code = data.readInt32BE(4);
      if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
        this.wire.write(Buffer.from('N'));
        data = data.subarray(length);
        continue;
      }
      if (code === CANCEL_REQUEST_CODE) {
        this.socket.destroy();
        return null;
      }
      this.loggedIn = true;
      this.wire.write(this.pool.welcome);
      return data.subarray(length);
    }
    this.pending = data;
    return null;
  }

  /** The next request goes to the server this client holds, or to the pool for one. */
  next(): void {
    if (this.busy || this.gone) return;
    const request = this.requests.shift();
    if (request === undefined) return;
    this.busy = true;
    if (this.server !== null) this.toServer(request);
    else this.pool.lease(this, request);
  }

  /** The pool gave this client `server` for `request`. */
  leased(server: Server, request: Buffer): void {
    this.server = server;
    server.holder = this;
    this.toServer(request);
  }

  /** A full server socket stops this client's reads until it drains (Server.onServerDrain). */
  private toServer(request: Buffer): void {
    if (!this.server!.conn.write(request)) this.wire.pause();
  }

  answered(idle: boolean): void {
    this.busy = false;
    const server = this.server!;
    if (idle) {
      this.server = null;
      server.holder = null;
      this.pool.release(server);
    }
    this.next();
  }

  /** The server connection went away under this client: its request fails, and so does the client. */
  lost(): void {
    this.send(encodeErrorResponse({ severity: 'FATAL', code: '08006', message: 'node-pool: server connection lost' }));
    this.socket.destroy();
  }

  private closed(): void {
    this.gone = true;
    this.requests.clear();
    // A request in flight keeps the server until its answer (Server.answered); an idle holder returns it.
    const server = this.server;
    if (server !== null && !this.busy) {
      server.holder = null;
      this.pool.discard(server); // left inside a transaction block: not reusable as it is
    }
  }
}

export class NodePool {
  /** What every client hears after its StartupMessage: AuthenticationOk, the server's parameters, ReadyForQuery. */
  welcome: Buffer = NOTHING;
  private readonly idle: Server[] = [];
  private readonly waiting = new Fifo<{ client: Client; request: Buffer }>();
  private readonly servers = new Set<Server>();
  private closing = false;
  private server: net.Server | null = null;

  constructor(
    private readonly upstream: NodePoolUpstream,
    private readonly size: number,
  ) {}

  /** Opens the pool's server connections and listens on 127.0.0.1 (an OS-chosen port). */
  async start(): Promise<net.AddressInfo> {
    const first = await this.connect();
    const parameters = [...first.conn.parameters].map(([name, value]) => encodeParameterStatus(name, value));
    this.welcome = Buffer.concat([encodeAuthenticationOk(), ...parameters, encodeBackendKeyData(process.pid, 0), encodeReadyForQuery('I')]);
    this.release(first);
    await Promise.all(Array.from({ length: this.size - 1 }, async () => this.release(await this.connect())));
    const server = net.createServer((socket) => void new Client(socket, this));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return server.address() as net.AddressInfo;
  }

  lease(client: Client, request: Buffer): void {
    const server = this.idle.pop();
    if (server !== undefined) client.leased(server, request);
    else this.waiting.push({ client, request });
  }

  /** A server connection is free: the longest-waiting client gets it, or it goes idle. */
  release(server: Server): void {
    for (let waiter = this.waiting.shift(); waiter !== undefined; waiter = this.waiting.shift()) {
      if (!waiter.client.gone) return waiter.client.leased(server, waiter.request);
    }
    this.idle.push(server);
  }

  /** A server connection that cannot serve anyone any more is closed, and another one opened. */
  discard(server: Server): void {
    if (!this.servers.delete(server)) return;
    const at = this.idle.indexOf(server);
    if (at >= 0) this.idle.splice(at, 1);
    server.conn.close(true);
    if (this.closing) return;
    this.connect().then(
      (replacement) => this.release(replacement),
      (err: unknown) => process.stderr.write(`node-pool: reconnecting failed: ${err instanceof Error ? err.message : String(err)}\n`),
    );
  }

  close(): void {
    this.closing = true;
    this.server?.close();
    for (const server of this.servers) server.conn.close(true);
    this.servers.clear();
  }

  private async connect(): Promise<Server> {
    const { host, port, user, password, database } = this.upstream;
    const conn = await BackendConnection.connect({
      connector: new TcpConnector(),
      target: { host, port },
      tls: () => ({ mode: 'disable' }),
      connectTimeoutMs: 10_000,
      user,
      database,
      params: new Map(),
      password: () => Promise.resolve(password),
      maxMessageSize: SERVER_MAX_MESSAGE,
    });
    const server = new Server(conn, this);
    this.servers.add(server);
    return server;
  }
}

/** The bench target: the pool in front of the primary, as a child process (it accepts any login). */
export function spawnNodePool(context: TargetContext, name: string): Promise<RunningTarget> {
  const { cluster, poolSize } = context;
  const { host, port } = cluster.primary;
  const { user, password } = cluster.users.app;
  return spawnScriptTarget(context, {
    name,
    script: import.meta.filename,
    args: [host, String(port), String(poolSize)],
    env: { NODE_POOL_USER: user, NODE_POOL_PASSWORD: password, NODE_POOL_DATABASE: cluster.database },
    details: `minimal Node.js transaction pooler on the ambassador's sockets: ${poolSize} server connections, no client auth, no statement names`,
  });
}

if (process.argv[1] === import.meta.filename) {
  const [host, port, size] = process.argv.slice(2);
  const { NODE_POOL_USER: user, NODE_POOL_PASSWORD: password = '', NODE_POOL_DATABASE: database } = process.env;
  if (host === undefined || !/^\d+$/.test(port ?? '') || !/^[1-9]\d*$/.test(size ?? '') || !user || !database) {
    process.stderr.write('usage: NODE_POOL_USER=... NODE_POOL_PASSWORD=... NODE_POOL_DATABASE=... node --import tsx bench/node-pool.ts <host> <port> <pool size>\n');
    process.exit(2);
  }
  const pool = new NodePool({ host, port: Number(port), user, password, database }, Number(size));
  const address = await pool.start();
  process.stdout.write(`listening ${address.port}\n`);
  process.once('SIGTERM', () => {
    pool.close();
    process.exit(0);
  });
}

// A socket's bytes, read and written past Node's Readable and Writable where that is safe.
//
// Why: net.Socket hands every chunk read through a Readable (addChunk, a 'data' emit, a
// process.nextTick for maybeReadMore) and every write through a Writable (writeOrBuffer, a
// nextTick for afterWrite); a tick queued makes Node enter JavaScript once more after each read
// callback (processTicksAndRejections, then processPromiseRejections). Under pgbench -M extended
// at 32 clients that machinery was about a tenth of the ambassador's CPU samples (perf), and a
// byte pipe using its sockets' libuv handles directly spent 5-12% less CPU per transaction than
// the same pipe on streams (medians of paired bench rounds). The forwarders move every byte of every
// transaction, so their sockets go the short way.
//
// How (DirectWire): the handle reads into one buffer shared by every socket, and its `onread`
// is replaced by one that hands a copy of each chunk to `onData` (Node allocates 64 KiB per read
// and shrinks it); end of stream and read errors go on to Node's own onread, so 'end', 'error'
// and 'close' happen as before. A write goes to the handle itself while the socket's Writable holds
// nothing (else through socket.write, behind what it holds, so the order is kept); libuv queues
// what the kernel did not take at once, and `onDrain` runs when that queue empties after a write
// reported it full. pause/resume stop and start reading on the handle.
//
// Node documents none of this (process.binding('stream_wrap') is deprecated, DEP0111, though
// Node 20 still has it): a socket whose handle is not a plain TCP or pipe handle (TLS), or a
// Node whose binding looks different, gets a StreamWire, the socket's own events and write.

import { Buffer } from 'node:buffer'; // not the global Buffer: on Node 20 that is a getter, called at every use
import net from 'node:net';
import tls from 'node:tls';
import { getSystemErrorName } from 'node:util';

/** Where a wire's bytes and drains go. */
export interface WireListener {
  onData(chunk: Buffer): void;
  /** The write queue emptied after write() returned false. */
  onDrain(): void;
}

export interface Wire {
  readonly direct: boolean;
  /** Writes `bytes`; false when the queue is over the high-water mark (wait for onDrain). */
  write(bytes: Uint8Array): boolean;
  /** Stops reading until resume() (backpressure). */
  pause(): void;
  resume(): void;
  readonly paused: boolean;
  /** The listener hears nothing more; what arrives from now on is dropped. */
  detach(): void;
}

/** Takes the socket's reads and writes over for `listener` (the socket's 'data' listeners are not called any more). */
export function openWire(socket: net.Socket, listener: WireListener): Wire {
  const handle = directHandle(socket);
  return handle === null ? new StreamWire(socket, listener) : new DirectWire(socket, handle, listener);
}

/** Net's default: a write buffered up to this many bytes still returns true. */
const HIGH_WATER_MARK = 16 * 1024;

/**
 * Every direct read lands here (the handles' useUserBuffer), and onread copies it out before the
 * next read can happen: one 64 KiB buffer for all sockets, where Node allocates 64 KiB per read
 * and shrinks it. It is never released: the handles hold its address.
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

/**
 * Views of READ_BUFFER's first n bytes, by n up to READ_VIEWS_MAX, each made once: Buffer#copy
 * makes a view of its source range on every call, which doubles the cost of copying a small read.
 */
const READ_VIEWS_MAX = 4096;
const READ_VIEWS: (Buffer | undefined)[] = new Array<Buffer | undefined>(READ_VIEWS_MAX + 1).fill(undefined);

/** A copy of the first `n` bytes of READ_BUFFER. */
function copyRead(n: number): Buffer {
  const chunk = Buffer.allocUnsafe(n);
  if (n > READ_VIEWS_MAX) {
    READ_BUFFER.copy(chunk, 0, 0, n);
    return chunk;
  }
  let view = READ_VIEWS[n];
  if (view === undefined) READ_VIEWS[n] = view = READ_BUFFER.subarray(0, n);
  chunk.set(view);
  return chunk;
}

// ---- the binding ----

interface WriteReq {
  handle: StreamHandle;
  oncomplete: (status: number) => void;
  buffer: Uint8Array | null;
}

interface StreamHandle {
  onread: (arrayBuffer: ArrayBuffer | undefined) => unknown;
  reading: boolean;
  readonly writeQueueSize: number;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteReq, bytes: Uint8Array): number;
  useUserBuffer(buffer: Uint8Array): void;
}

interface StreamBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

const binding = loadBinding();
const READ_BYTES_OR_ERROR = binding?.kReadBytesOrError ?? 0;
const LAST_WRITE_WAS_ASYNC = binding?.kLastWriteWasAsync ?? 0;

function loadBinding(): StreamBinding | null {
  try {
    const found = (process as unknown as { binding(name: string): Partial<StreamBinding> }).binding('stream_wrap');
    const { WriteWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = found;
    const indexes = [kReadBytesOrError, kLastWriteWasAsync];
    if (typeof WriteWrap !== 'function' || !(streamBaseState instanceof Int32Array)) return null;
    if (!indexes.every((index) => Number.isInteger(index) && index! >= 0 && index! < streamBaseState.length)) return null;
    return found as StreamBinding;
  } catch {
    return null;
  }
}

/** The libuv handle to use directly, or null when this socket must go through its streams. */
function directHandle(socket: net.Socket): StreamHandle | null {
  if (binding === null || socket instanceof tls.TLSSocket || socket.destroyed) return null;
  const handle = (socket as unknown as { _handle: Partial<StreamHandle> | null })._handle;
  if (handle === null || typeof handle !== 'object') return null;
  const { onread, readStart, readStop, writeBuffer, useUserBuffer } = handle;
  if (typeof onread !== 'function' || typeof readStart !== 'function' || typeof readStop !== 'function' || typeof writeBuffer !== 'function') return null;
  if (typeof useUserBuffer !== 'function') return null;
  if (typeof handle.writeQueueSize !== 'number') return null;
  return handle as StreamHandle;
}

function systemError(status: number, syscall: string): NodeJS.ErrnoException {
  const code = getSystemErrorName(status);
  return Object.assign(new Error(`${syscall} ${code}`), { errno: status, code, syscall });
}

// ---- the two kinds ----

const DETACHED: WireListener = { onData: () => {}, onDrain: () => {} };

class StreamWire implements Wire {
  readonly direct = false;
  private readonly onData: (chunk: Buffer) => void;
  private readonly onDrain: () => void;

  constructor(
    private readonly socket: net.Socket,
    listener: WireListener,
  ) {
    this.onData = (chunk) => listener.onData(chunk);
    this.onDrain = () => listener.onDrain();
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
  }

  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.off('drain', this.onDrain);
  }

  get paused(): boolean {
    return this.socket.isPaused();
  }

  write(bytes: Uint8Array): boolean {
    return this.socket.write(bytes);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }
}

class DirectWire implements Wire {
  readonly direct = true;
  private readonly state: Int32Array;
  private readonly nodeOnread: StreamHandle['onread'];
  /** A request object no write has made asynchronous yet: a write the kernel takes whole leaves it unused. */
  private spare: WriteReq | null = null;
  private reading = false;
  /** write() returned false: onDrain is owed. */
  private drainWanted = false;
  /** Writes of this wire that libuv still holds. */
  private pendingWrites = 0;
  /** Listening for the socket's 'drain' (a write went through its Writable and reported it full). */
  private awaitingSocketDrain = false;
  /** Chunks the socket's Readable held when the wire took over, not yet delivered. */
  private readonly backlog: Buffer[] = [];

  constructor(
    private readonly socket: net.Socket,
    private readonly handle: StreamHandle,
    private listener: WireListener,
  ) {
    this.state = binding!.streamBaseState;
    this.nodeOnread = handle.onread;
    handle.onread = this.onread;
    handle.useUserBuffer(READ_BUFFER);
    // Bytes the Readable still holds (the socket was paused) go first, on the next resume().
    while (socket.readableLength > 0) {
      const chunk = socket.read() as Buffer | null;
      if (chunk === null) break;
      this.backlog.push(chunk);
    }
    if (this.backlog.length > 0) this.stopReading();
    this.reading = handle.reading === true;
  }

  private readonly onread = (arrayBuffer: ArrayBuffer | undefined): unknown => {
    const nread = this.state[READ_BYTES_OR_ERROR]!;
    if (nread > 0) {
      // A copy the listener may keep (small ones are slices of Node's buffer pool).
      this.listener.onData(copyRead(nread));
      return undefined;
    }
    // End of stream or an error: Node's own handling ('end', 'error', 'close').
    return nread < 0 ? this.nodeOnread.call(this.handle, arrayBuffer) : undefined;
  };

  write(bytes: Uint8Array): boolean {
    const socket = this.socket;
    if (!socket.writable || socket.writableLength > 0) return this.writeBehind(bytes);
    const handle = this.handle;
    let req = this.spare;
    if (req === null) {
      // A request is reused until a write stays pending: its handle and callback stay set (they
      // are accessors on the native object, costly to store again on every write).
      req = new binding!.WriteWrap();
      req.handle = handle;
      req.oncomplete = this.onWritten;
    }
    const err = handle.writeBuffer(req, bytes);
    if (err !== 0) {
      socket.destroy(systemError(err, 'write'));
      return false;
    }
    if (this.state[LAST_WRITE_WAS_ASYNC] === 0) {
      this.spare = req;
      return true;
    }
    // libuv holds the rest until the kernel takes it; the request keeps the bytes alive.
    this.spare = null;
    req.buffer = bytes;
    this.pendingWrites++;
    if (handle.writeQueueSize < HIGH_WATER_MARK) return true;
    this.drainWanted = true;
    return false;
  }

  /** The socket's Writable holds bytes (or cannot write): this write goes behind them, through it. */
  private writeBehind(bytes: Uint8Array): boolean {
    if (this.socket.write(bytes)) return true;
    this.drainWanted = true;
    if (!this.awaitingSocketDrain) {
      this.awaitingSocketDrain = true;
      this.socket.once('drain', this.onSocketDrain);
    }
    return false;
  }

  private readonly onWritten = (status: number): void => {
    this.pendingWrites--;
    if (status < 0) {
      if (!this.socket.destroyed) this.socket.destroy(systemError(status, 'write'));
      return;
    }
    this.drained();
  };

  private readonly onSocketDrain = (): void => {
    this.awaitingSocketDrain = false;
    this.drained();
  };

  /** Owes onDrain and nothing it wrote is queued any more: pays it. */
  private drained(): void {
    if (!this.drainWanted || this.pendingWrites > 0 || this.awaitingSocketDrain) return;
    this.drainWanted = false;
    this.listener.onDrain();
  }

  detach(): void {
    this.listener = DETACHED;
  }

  get paused(): boolean {
    return !this.reading;
  }

  pause(): void {
    if (this.reading) this.stopReading();
  }

  resume(): void {
    if (this.reading || this.socket.destroyed) return;
    this.reading = true;
    const backlog = this.backlog;
    while (backlog.length > 0) {
      this.listener.onData(backlog.shift()!);
      if (!this.reading) return; // paused again by what it delivered
    }
    // Node's own `reading` flag says whether it restarted the handle meanwhile (a second
    // readStart would fail). A failure otherwise means the socket is closing: its events say so.
    if (this.handle.reading === true) return;
    this.handle.reading = true;
    this.handle.readStart();
  }

  private stopReading(): void {
    this.reading = false;
    if (this.socket.destroyed) return;
    this.handle.reading = false;
    this.handle.readStop();
  }
}

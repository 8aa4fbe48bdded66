// What one request puts on a server connection, assembled into a single write. Most requests are
// the client's own bytes, whole messages lying side by side in the chunk they came in: those go
// as that chunk, or one view of it, with nothing copied. Messages are taken as ranges of their
// chunk, not as views of it: on Node 20 a view costs about as much as a small copy, and telling
// whether two views share memory costs a call into the runtime each. A request that renames a
// statement (a Bind of a shared prepared statement, under transaction pooling) is written into
// one new buffer, the renamed Bind in place among the rest, so that it costs one allocation and
// one copy whatever the number of its parts.

import { Buffer } from 'node:buffer';
import { type BindLayout, renamedBindSize, writeRenamedBind } from '../protocol/frontend.ts';
import { copyBytes } from '../protocol/writer.ts';

const EMPTY = Buffer.alloc(0);
const NO_BIND: BindLayout = Object.freeze({ chunk: EMPTY, start: 0, end: 0, portalEnd: 0, restOffset: 0 });

/** Collects a request's messages, then hands them over as one buffer; reused (take() leaves it empty). */
export class Outgoing {
  /**
   * Messages sent as they are, each `chunks[i][starts[i], ends[i])`; a renamed Bind holds its
   * place with an empty chunk. Slots past `count` are free.
   */
  private readonly chunks: Buffer[] = [];
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private count = 0;
  private readonly binds: BindLayout[] = [];
  private readonly names: Buffer[] = [];
  private renamed = 0;
  private size = 0;

  /** A message sent as it is (header included): `chunk[start, end)`. */
  add(chunk: Buffer, start = 0, end = chunk.length): void {
    const i = this.count++;
    this.chunks[i] = chunk;
    this.starts[i] = start;
    this.ends[i] = end;
    this.size += end - start;
  }

  /** A Bind aimed at the statement `name` (its bytes and NUL) instead of the client's. */
  addRenamedBind(bind: BindLayout, name: Buffer): void {
    this.add(EMPTY, 0, 0);
    this.binds[this.renamed] = bind;
    this.names[this.renamed++] = name;
    this.size += renamedBindSize(bind, name);
  }

  /** Everything added, as one buffer (the client's chunk or a view of it when it can be), or null when nothing was; then empty. */
  take(): Buffer | null {
    let out: Buffer | null = null;
    if (this.count > 0) out = this.renamed > 0 ? this.copied() : (this.adjacent() ?? this.copied());
    this.clear();
    return out;
  }

  /** Drops whatever was added (and lets go of it). */
  clear(): void {
    for (let i = 0; i < this.count; i++) this.chunks[i] = EMPTY;
    for (let i = 0; i < this.renamed; i++) {
      this.binds[i] = NO_BIND;
      this.names[i] = EMPTY;
    }
    this.count = this.renamed = this.size = 0;
  }

  private copied(): Buffer {
    const out = Buffer.allocUnsafe(this.size);
    let at = 0;
    let bind = 0;
    for (let i = 0; i < this.count; i++) {
      const chunk = this.chunks[i]!;
      if (chunk !== EMPTY) at += copyBytes(out, at, chunk, this.starts[i]!, this.ends[i]!);
      else {
        at = writeRenamedBind(out, at, this.binds[bind]!, this.names[bind]!);
        bind++;
      }
    }
    return out;
  }

  /** The messages as one range of one chunk, when they lie side by side in it, in order; else null. */
  private adjacent(): Buffer | null {
    const chunk = this.chunks[0]!;
    let end = this.ends[0]!;
    for (let i = 1; i < this.count; i++) {
      if (this.chunks[i] !== chunk || this.starts[i] !== end) return null;
      end = this.ends[i]!;
    }
    const start = this.starts[0]!;
    return start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end);
  }
}

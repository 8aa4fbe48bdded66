// What one request puts on a server connection, assembled into a single write. Most requests are
// the client's own bytes, whole messages lying side by side in the chunk they came in: those go
// as one view of that chunk, with nothing copied. A request that renames a statement (a Bind of
// a shared prepared statement, under transaction pooling) is written into one new buffer, the
// renamed Bind in place among the rest, so that it costs one allocation and one copy whatever
// the number of its parts.

import { type BindLayout, renamedBindSize, writeRenamedBind } from '../protocol/frontend.ts';
import { copyBytes } from '../protocol/writer.ts';

const EMPTY = Buffer.alloc(0);
const NO_BIND: BindLayout = Object.freeze({ payload: EMPTY, portalEnd: 0, restOffset: 0 });

/** Collects a request's messages, then hands them over as one buffer; reused (take() leaves it empty). */
export class Outgoing {
  /** Messages sent as they are; a renamed Bind holds its place as null. Slots past `count` are free. */
  private readonly parts: (Buffer | null)[] = [];
  private count = 0;
  private readonly binds: BindLayout[] = [];
  private readonly names: Buffer[] = [];
  private renamed = 0;
  private size = 0;

  /** A message sent as it is (header included). */
  add(message: Buffer): void {
    this.parts[this.count++] = message;
    this.size += message.length;
  }

  /** A Bind aimed at the statement `name` (its bytes and NUL) instead of the client's. */
  addRenamedBind(bind: BindLayout, name: Buffer): void {
    this.parts[this.count++] = null;
    this.binds[this.renamed] = bind;
    this.names[this.renamed++] = name;
    this.size += renamedBindSize(bind, name);
  }

  /** Everything added, as one buffer (a view of the client's chunk when it can be), or null when nothing was; then empty. */
  take(): Buffer | null {
    const count = this.count;
    let out: Buffer | null = null;
    if (this.renamed > 0) out = this.copied();
    else if (count === 1) out = this.parts[0]!;
    else if (count > 1) out = this.adjacent() ?? this.copied();
    this.clear();
    return out;
  }

  /** Drops whatever was added (and lets go of it). */
  clear(): void {
    for (let i = 0; i < this.count; i++) this.parts[i] = null;
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
      const part = this.parts[i];
      if (part) at += copyBytes(out, at, part, 0, part.length);
      else {
        at = writeRenamedBind(out, at, this.binds[bind]!, this.names[bind]!);
        bind++;
      }
    }
    return out;
  }

  /** The parts as one view when they lie side by side in one buffer, in order; else null. */
  private adjacent(): Buffer | null {
    const first = this.parts[0]!;
    const buffer = first.buffer;
    let end = first.byteOffset + first.length;
    for (let i = 1; i < this.count; i++) {
      const next = this.parts[i]!;
      if (next.buffer !== buffer || next.byteOffset !== end) return null;
      end += next.length;
    }
    return Buffer.from(buffer, first.byteOffset, end - first.byteOffset);
  }
}


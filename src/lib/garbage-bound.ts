// Bounds the memory held by buffers that were already forwarded but not yet collected.
//
// Every chunk read from a socket is a fresh Buffer whose memory lives outside the V8 heap. V8
// collects them only when that external memory grows past its own threshold (~32 MB here),
// so a proxy streaming a large result sits at +35 MB RSS of dead buffers: a lot for a sidecar
// with a memory limit. Asking for a young-generation collection every `everyBytes` forwarded
// frees them early; with the ambassador's small young generation a scavenge costs well under a
// millisecond. Measured: a 500 MB result through the ambassador grew RSS by 35 MB without this,
// by 9-13 MB with a collection every 8 MB, and by 3-5 MB every 2 MB (the listener's choice).
//
// The collector is obtained once from V8 (--expose-gc); when that is not possible the bound is
// a no-op and only V8's own heuristics apply.

import v8 from 'node:v8';
import vm from 'node:vm';

type Collector = (options: { type: 'minor' | 'major' }) => void;

function obtainCollector(): Collector | null {
  const existing = (globalThis as { gc?: Collector }).gc;
  if (typeof existing === 'function') return existing;
  try {
    v8.setFlagsFromString('--expose-gc');
    const collector = vm.runInNewContext('gc') as Collector | undefined;
    return typeof collector === 'function' ? collector : null;
  } catch {
    return null;
  }
}

export class GarbageBound {
  private pending = 0;
  private readonly collect: Collector | null;

  constructor(private readonly everyBytes: number, collector: Collector | null = obtainCollector()) {
    this.collect = everyBytes > 0 ? collector : null;
  }

  /** Counts forwarded bytes; collects young garbage each time `everyBytes` have passed. */
  account(bytes: number): void {
    this.pending += bytes;
    if (this.pending < this.everyBytes || this.collect === null) return;
    this.pending = 0;
    this.collect({ type: 'minor' });
  }

  get active(): boolean {
    return this.collect !== null;
  }
}

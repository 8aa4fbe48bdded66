// Work batched into the event loop's check phase (setImmediate), on the hot path.
//
// Why: under load one pass of the event loop reads many sockets. Work queued here runs once
// every read of the pass has been handled, all of it behind one setImmediate, instead of in the
// middle of the reads (a microtask behind each). The answers finished while clients wait for the
// pool go this way (txn-forwarder.ts, say, for what it measured); the pool's hand-offs do the
// same in a loop of their own (pooler.ts, HandOffs: one batch's handler inlines there, two
// sharing this loop do not). A handler that throws surfaces as an uncaught exception (it ends
// the process); the items behind it are still handled, in the next check phase.

import { Fifo } from './fifo.ts';

/** Items handed to `handle` in the next check phase, in the order added. */
export class CheckPhaseBatch<T> {
  /** A ring: an Array emptied after each batch costs a splice or a length store, runtime calls both. */
  private readonly due = new Fifo<T>();
  private running = false;

  constructor(private readonly handle: (item: T) => void) {}

  add(item: T): void {
    this.due.push(item);
    // One added while the batch runs (by a handler) joins it, behind the others.
    if (this.due.length === 1 && !this.running) setImmediate(this.run);
  }

  private readonly run = (): void => {
    const due = this.due;
    this.running = true;
    try {
      for (let item = due.shift(); item !== undefined; item = due.shift()) this.handle(item);
    } finally {
      this.running = false;
      // Only after a handler threw: the others are still handled.
      if (due.length > 0) setImmediate(this.run);
    }
  };
}

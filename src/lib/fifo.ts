// First-in first-out queues on a ring of slots. Two reasons not to use an Array with push/shift:
// Array.shift copies the whole array once it holds more than ~16k entries (V8), so a queue that a
// client can fill (200,000 pipelined Syncs are 1 MB) would make draining it quadratic and freeze
// the event loop for everyone; and the hot path pushes and shifts one entry per request, which on
// a ring allocates nothing once the ring has room (an array emptied and refilled grows a new
// backing store each time). A ring grows by doubling, and goes back to its first size once it is
// empty, so one burst does not keep a large ring alive for the rest of a session.

/** Slots of a ring that starts small and stays small for a client with a request or two in flight. */
const FIRST_CAPACITY = 4;
/** An empty ring larger than this is given back (a burst of queued requests is over). */
const KEPT_CAPACITY = 64;

/** An Array or a typed array: what a ring keeps its entries in. */
interface Slots<E> {
  readonly length: number;
  [index: number]: E | undefined;
}

/**
 * The slots of a ring that never held anything, shared: a ring of capacity 0 gets slots of its own
 * before its first entry, and an idle client (thousands of them, each with a few queues) keeps none.
 */
const NO_SLOTS: Slots<never> = [];
const NO_NUMBERS = new Float64Array(0);

/** A ring of a power-of-two number of slots; the storage (`allocate`) is the subclass's. */
abstract class Ring<E> {
  private head = 0;
  private count = 0;

  constructor(private slots: Slots<E>) {}

  /** Storage for `capacity` slots. */
  protected abstract allocate(capacity: number): Slots<E>;

  get length(): number {
    return this.count;
  }

  /** The oldest entry, left in place. */
  get first(): E | undefined {
    return this.count === 0 ? undefined : this.slots[this.head];
  }

  /** The entry `index` places behind the oldest, left in place. */
  at(index: number): E | undefined {
    return index >= 0 && index < this.count ? this.slots[(this.head + index) & (this.slots.length - 1)] : undefined;
  }

  push(item: E): void {
    if (this.count === this.slots.length) this.regrow(Math.max(FIRST_CAPACITY, this.slots.length * 2));
    this.slots[(this.head + this.count++) & (this.slots.length - 1)] = item;
  }

  /** Puts an entry back in front (it was taken and not used). */
  unshift(item: E): void {
    if (this.count === this.slots.length) this.regrow(Math.max(FIRST_CAPACITY, this.slots.length * 2));
    this.head = (this.head - 1) & (this.slots.length - 1);
    this.count++;
    this.slots[this.head] = item;
  }

  shift(): E | undefined {
    if (this.count === 0) return undefined;
    const slots = this.slots;
    const item = slots[this.head];
    slots[this.head] = undefined; // the queue no longer keeps it alive (a typed array reads it as NaN)
    this.head = (this.head + 1) & (slots.length - 1);
    if (--this.count === 0) {
      this.head = 0;
      // A ring a burst made large goes back to its first size.
      if (slots.length > KEPT_CAPACITY) this.regrow(FIRST_CAPACITY);
    }
    return item;
  }

  clear(): void {
    this.head = 0;
    this.count = 0;
    this.regrow(FIRST_CAPACITY);
  }

  /** New storage of `capacity` slots holding the current entries from slot 0 on. */
  private regrow(capacity: number): void {
    const slots = this.allocate(capacity);
    for (let i = 0; i < this.count; i++) slots[i] = this.slots[(this.head + i) & (this.slots.length - 1)];
    this.slots = slots;
    this.head = 0;
  }
}

export class Fifo<T> extends Ring<T> {
  constructor() {
    super(NO_SLOTS);
  }

  protected allocate(capacity: number): Slots<T> {
    return new Array<T | undefined>(capacity).fill(undefined);
  }
}

/** A Fifo of numbers in a Float64Array: an Array would box each fractional number it holds. */
export class NumberFifo extends Ring<number> {
  constructor() {
    super(NO_NUMBERS);
  }

  protected allocate(capacity: number): Slots<number> {
    return new Float64Array(capacity);
  }
}
